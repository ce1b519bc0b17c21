"""The project folder: paths, manifest, atomic writes, lock, fingerprints."""
