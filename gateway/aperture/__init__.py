"""Migration from Lightning Labs' Aperture: config converter and root-key importer.

- `convert`/`services`/`emit`: aperture.yaml -> routes.yaml (pure, then text);
- `keystore`: read-only reads of Aperture's secret store (SQLite or PostgreSQL);
- `importer`: those root keys -> our store through its `KeyImporter` role;
- `commands`: the `convert-aperture` and `import-aperture` subcommands.
"""
