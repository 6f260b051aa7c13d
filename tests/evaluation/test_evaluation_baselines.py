import numpy as np
import pytest
import torch

from uterosynth.core.errors import DataError
from uterosynth.data.synthetic import SyntheticSet
from uterosynth.evaluation.baselines import (
    Autoencoder,
    AutoencoderAdapter,
    make_class_prior_baseline,
    make_prior_baseline,
    make_reconstruction_baseline,
)


def _tiny_ae(spatial_dims, image_shape):
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(0)
    net = AutoencoderKL(spatial_dims=spatial_dims, in_channels=1, out_channels=1, channels=(4, 4), latent_channels=2,
                        num_res_blocks=1, norm_num_groups=2, attention_levels=(False, False))
    return AutoencoderAdapter(net, image_shape=image_shape, name="tiny-ae")


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reconstruction_baseline(tmp_path, prepared_2d, prepared_3d, spatial_dims):
    data, shape = (prepared_2d, (32, 32)) if spatial_dims == 2 else (prepared_3d, (16, 16, 8))
    ae = _tiny_ae(spatial_dims, shape)
    assert isinstance(ae, Autoencoder) and ae.latent_shape[0] == 2
    out = make_reconstruction_baseline(ae, f"{data}:test", tmp_path / "recon")
    sset = SyntheticSet.load(out)
    arr = sset.stack()
    assert arr.shape[1:] == shape and arr.min() >= 0 and arr.max() <= 1
    assert sset.records[0]["condition"]["orientation"] in {"AVAF", "AVRF", "RVAF", "RVRF"}
    assert sset.info["kind"] == "reconstruction" and sset.info["dims"] == spatial_dims


def test_prior_baseline_is_batch_independent(tmp_path):
    ae = _tiny_ae(2, (16, 16))
    a = SyntheticSet.load(make_prior_baseline(ae, 5, tmp_path / "a", seed=3, batch_size=2)).stack()
    b = SyntheticSet.load(make_prior_baseline(ae, 5, tmp_path / "b", seed=3, batch_size=5)).stack()
    c = SyntheticSet.load(make_prior_baseline(ae, 5, tmp_path / "c", seed=4)).stack()
    assert a.shape == (5, 16, 16)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)


def test_prior_baseline_needs_items(tmp_path):
    with pytest.raises(DataError, match="n must be"):
        make_prior_baseline(_tiny_ae(2, (16, 16)), 0, tmp_path / "p")


class _IdentityAE:
    """Latent = image: the class prior then samples around each class's mean image."""

    def __init__(self, shape):
        self.latent_shape = (1, *shape)

    def encode(self, x):
        return x, torch.ones_like(x)

    def decode(self, z):
        return z


def test_class_prior_samples_each_class_around_its_own_mean(tmp_path, prepared_2d):
    from uterosynth.data.manifest import PreparedDataset

    out = make_class_prior_baseline(_IdentityAE((32, 32)), prepared_2d, ["orientation"], 40, tmp_path / "cp", seed=1)
    sset = SyntheticSet.load(out)
    classes = ["AVAF", "AVRF", "RVAF", "RVRF"]
    assert [r["condition"]["orientation"] for r in sset.records] == classes * 10
    assert sset.info["kind"] == "class_prior" and sset.info["fit_items_per_class"] == {c: 2 for c in classes}
    train = PreparedDataset.load(prepared_2d, "train")
    real_means = np.stack([np.mean([train.load_array(r) for r in train.rows if r["orientation"] == c], axis=0)
                           for c in classes])
    samples = sset.stack()
    for k in range(4):
        mean_of_samples = samples[k::4].mean(0)
        distances = ((real_means - mean_of_samples) ** 2).sum(axis=(1, 2))
        assert distances.argmin() == k
    again = SyntheticSet.load(make_class_prior_baseline(_IdentityAE((32, 32)), prepared_2d, ["orientation"], 40,
                                                        tmp_path / "cp2", seed=1, batch_size=7)).stack()
    np.testing.assert_allclose(samples, again, atol=1e-6)


def test_class_prior_needs_known_attributes(tmp_path, prepared_2d):
    with pytest.raises(DataError, match="pathology"):
        make_class_prior_baseline(_IdentityAE((32, 32)), prepared_2d, ["pathology"], 4, tmp_path / "cp")
    assert not (tmp_path / "cp").exists()


def test_class_prior_needs_two_items_per_class(tmp_path):
    from conftest import make_prepared_dataset

    data = make_prepared_dataset(tmp_path / "one_each", dims=2, shape=(16, 16), items_per_subject=1)
    with pytest.raises(DataError, match="fewer than two items"):
        make_class_prior_baseline(_IdentityAE((16, 16)), data, ["orientation"], None, tmp_path / "cp")
    assert not (tmp_path / "cp").exists()
