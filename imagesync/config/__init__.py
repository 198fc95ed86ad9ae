"""Configuration: YAML + image-lists.conf -> one frozen, validated Settings."""
