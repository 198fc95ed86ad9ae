"""The Glance target: keystoneauth1 sessions, inventory, uploads, shares and retirements."""
