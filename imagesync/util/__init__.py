"""Small helpers every stage uses: atomic writes, safe text, redaction of secrets."""
