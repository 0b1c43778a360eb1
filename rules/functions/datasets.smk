# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def datasets_outputs():
    return [f"{DATA}/train.npz", f"{DATA}/test.npz", f"{DATA}/manifest.json"]


def data_inputs():
    """Local files the dataset is read from, so that editing them reruns prepare_data."""
    ds = config["dataset"]
    if ds["source"] == "image_folder":
        from stepattr.datasets.base import labels_csv_path

        labels = labels_csv_path(ds["path"], ds.get("labels_csv"))
        return [ds["path"]] + ([str(labels)] if labels else [])
    if ds["source"] == "cifar10" and ds["url"].startswith("file:"):
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        return [url2pathname(urlsplit(ds["url"]).path)]
    return []


def data_resource(name):
    """Memory (MB) or wall time (minutes) of prepare_data for the configured source."""
    return DATASET_SOURCES[config["dataset"]["source"]][name]
