"""Migration from Lightning Labs' Aperture: config converter and root-key importer.

- `convert`/`services`/`emit`/`source`/`notes`: aperture.yaml -> routes.yaml (pure, then text);
- `keystore` (the source role), `sourcesql` (every query, both databases), `sqlite_source`,
  `pg_source`: paged, bounded, read-only reads of Aperture's database;
- `rows`: each row checked (pure), the one reason a bad row is bad; `shown`: database text
  escaped before it is printed;
- `importer`: those root keys -> our store in batches (`KeyImporter.import_root_keys`);
  `revocations`: tokens Aperture revoked since an import; `options`: what a run may be asked;
- `commands`: the `convert-aperture` and `import-aperture` subcommands.
"""
