"""Flask blueprints, one module per dialect plus meta (health, version, the web page)."""
