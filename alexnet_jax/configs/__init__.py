"""The configs, shipped with the package: `configs/paper.py` in the repository is this folder.
`--config=configs/<name>.py` finds them from any directory (`configuration.resolve`)."""
