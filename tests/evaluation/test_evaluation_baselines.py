import numpy as np
import pytest
import torch

from uterosynth.data.synthetic import SyntheticSet
from uterosynth.errors import DataError
from uterosynth.evaluation.baselines import (
    Autoencoder,
    AutoencoderAdapter,
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
