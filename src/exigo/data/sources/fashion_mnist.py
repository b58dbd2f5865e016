"""Fashion-MNIST: 70,000 Zalando article images in 10 classes, 28x28 grey (Xiao et al. 2017).

Mirror and archive md5s as torchvision publishes them (tests/test_download.py checks that they
agree).
"""

from __future__ import annotations

from exigo.data.idx import DatasetSpec, idx_files, register_idx

SPEC = DatasetSpec(
    name="fashion-mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=idx_files(
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        60_000,
        10_000,
    ),
)


register_idx(SPEC, __name__)
