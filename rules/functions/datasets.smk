# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def datasets_outputs():
    return [f"{DATA}/train.npz", f"{DATA}/test.npz", f"{DATA}/manifest.json"]


def data_inputs():
    """Local files the dataset is read from, so that editing them reruns prepare_data."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    ds = config["dataset"]
    if ds["source"] == "image_folder":
        from stepattr.datasets.base import folder_csv_path

        csvs = [folder_csv_path(ds["path"], ds.get(key)) for key in ("labels_csv", "captions_csv")]
        return [ds["path"]] + [str(path) for path in csvs if path]
    urls = {"cifar10": ["url"], "coco": ["annotations_url", "images_url"]}
    return [
        url2pathname(urlsplit(ds[key]).path)
        for key in urls.get(ds["source"], [])
        if ds[key].startswith("file:")
    ]


def data_resource(name):
    """Memory (MB) or wall time (minutes) of prepare_data for the configured source."""
    return DATASET_SOURCES[config["dataset"]["source"]][name]
