"""tnnspec.neural.stats and tnnspec.neural.regression against independent references.

References: np.corrcoef, the Spearman–Brown formula, the reliability of a mean of R noisy trials
(σs² / (σs² + σn²/R)), hand-computed medians, the closed-form ridge solution in NumPy and
scikit-learn's PCA. Tolerances are stated at each assertion.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tnnspec.neural import NeuralDataError
from tnnspec.neural import regression as reg
from tnnspec.neural.stats import ceiled_score, ceiling_r, pearson_columns, spearman_brown, split_half_reliability


def _ridge_ref(X, Y, Xt, alpha):
    """w = (XcᵀXc + αI)⁻¹ XcᵀYc on training-centred data; prediction (Xt − μX) w + μY."""
    mx, my = X.mean(0), Y.mean(0)
    Xc = X - mx
    return (Xt - mx) @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (Y - my)) + my


# ---------------------------------------------------------------- stats


def test_pearson_columns_matches_corrcoef_and_constant_is_nan():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    b[:, 1] = 2 * a[:, 1] + 1  # r = 1
    ref = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(6)]
    np.testing.assert_allclose(pearson_columns(a, b), ref, rtol=0, atol=1e-12)
    a[:, 2], b[:, 4] = 0.1, 7.0  # constant columns (0.1 is not exact in binary: centring leaves ~1e-17)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson_columns(a, b)
    assert np.isnan(r[[2, 4]]).all() and np.isfinite(r[[0, 1, 3, 5]]).all()


def test_spearman_brown_formula():
    r = np.array([-0.5, 0.0, 0.3, 0.6, 1.0])
    np.testing.assert_allclose(spearman_brown(r), 2 * r / (1 + r), atol=1e-15)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(spearman_brown(r, 3.0), 3 * r / (1 + 2 * r), atol=1e-15)
    assert spearman_brown(0.5) == pytest.approx(2 / 3, abs=1e-15)


def _trials(rng, S, reps, sd, sn):
    """trials[s] = signal[s] + N(0, sn²) per repetition; signal [S, N, B] with std sd [N, B]."""
    signal = rng.normal(size=(S, *sd.shape)) * sd
    return [signal[s] + sn * rng.normal(size=(r, *sd.shape)) for s, r in enumerate(reps)], signal


def test_split_half_reliability_recovers_known_reliability():
    # 8 neurons × 3 bins with signal std 0.8..2 and trial noise 2, R = 20 repetitions, S = 400:
    # expected full-data reliability σs² / (σs² + σn²/R) runs from 0.76 to 0.95. The standard error
    # of one neuron/bin estimate is at most ~0.025 (≈ (1 − ρ_half²)/sqrt(S) times the Spearman–Brown
    # slope 2/(1 + ρ_half)²), so: the median absolute error is within 0.05 (the brief's bound),
    # every cell within 0.08 (> 3 SE), and the mean over the 24 cells (SE ~0.005) within 0.02 of
    # the mean expectation (no bias; omitting the Spearman–Brown step would be off by ~0.1).
    rng = np.random.default_rng(1)
    sd, sn, R = np.linspace(0.8, 2.0, 8)[:, None] * np.ones((8, 3)), 2.0, 20
    trials, _ = _trials(rng, 400, [R] * 400, sd, sn)
    rel = split_half_reliability(trials, n_splits=10, seed=0)
    expected = sd**2 / (sd**2 + sn**2 / R)
    assert rel.shape == (8, 3)
    err = np.abs(rel - expected)
    assert np.median(err) < 0.05 and err.max() < 0.08
    assert abs(rel.mean() - expected.mean()) < 0.02
    np.testing.assert_array_equal(rel, split_half_reliability(trials, n_splits=10, seed=0))  # deterministic
    assert not np.array_equal(rel, split_half_reliability(trials, n_splits=10, seed=1))


def test_split_half_reliability_uneven_repetitions_and_errors():
    rng = np.random.default_rng(2)
    sd = np.ones((4, 2))
    # noise-free repetitions (2, 3 or 5 of them): every split's halves agree exactly → reliability 1
    trials, _ = _trials(rng, 50, rng.choice([2, 3, 5], 50), sd, 0.0)
    np.testing.assert_allclose(split_half_reliability(trials, n_splits=3), 1.0, atol=1e-12)
    # noisy, R_s from 6 to 10: the mean reliability lies between the expectations for R = 6 and R = 10
    trials, _ = _trials(rng, 400, rng.integers(6, 11, 400), sd, 2.0)
    m = split_half_reliability(trials).mean()
    assert 1 / (1 + 4 / 6) - 0.03 < m < 1 / (1 + 4 / 10) + 0.03
    trials[7] = trials[7][:1]
    with pytest.raises(NeuralDataError, match="stimulus 7 has 1 repetition"):
        split_half_reliability(trials)
    with pytest.raises(NeuralDataError, match="stimulus 1"):
        split_half_reliability([np.zeros((3, 4, 2)), np.zeros((3, 5, 2)), np.zeros((3, 4, 2))])


def test_ceiled_score_point_values_nan_and_ceiling():
    r = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    rel = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    out = ceiled_score(r, rel)  # default: ceiling = sqrt(median reliability)
    assert (out["raw"], out["n_neurons"]) == (0.3, 5) and "note" not in out
    assert out["ceiling"] == pytest.approx(np.sqrt(0.7), abs=1e-15)
    assert out["ceiled"] == pytest.approx(0.3 / np.sqrt(0.7), abs=1e-15)
    bs = ceiled_score(r, rel, convention="brainscore")  # Brain-Score: ceiling = median reliability
    assert bs["ceiling"] == 0.7 and bs["ceiled"] == pytest.approx(0.3 / 0.7, abs=1e-15)
    assert ceiling_r(np.array([0.5, np.nan, 0.9]), "brainscore") == pytest.approx(0.7)  # NaN ignored
    with pytest.raises(NeuralDataError, match="convention"):
        ceiling_r(rel, "other")
    # NaN r (constant prediction) counts as 0: median of [0, 0, 0.5] is 0, not 0.5
    assert ceiled_score(np.array([np.nan, np.nan, 0.5]), np.full(3, 0.8))["raw"] == 0.0
    bad = ceiled_score(r, np.array([-0.2, -0.1, 0.0, 0.1, 0.2]))
    assert bad["ceiling"] == 0.0 and np.isnan(bad["ceiled"]) and "too noisy" in bad["note"]


def test_ceiled_score_bootstrap_interval():
    rng = np.random.default_rng(3)

    def draw(n):
        return rng.normal(0.4, 0.15, n), rng.uniform(0.5, 0.9, n)

    small, large = ceiled_score(*draw(20), seed=0), ceiled_score(*draw(2000), seed=0)
    for out in (small, large):
        assert out["low"] <= out["ceiled"] <= out["high"]
    assert large["high"] - large["low"] < 0.3 * (small["high"] - small["low"])  # width ∝ 1/sqrt(N)
    r, rel = draw(50)
    assert ceiled_score(r, rel, seed=5) == ceiled_score(r, rel, seed=5)
    assert ceiled_score(r, rel, seed=5)["low"] != ceiled_score(r, rel, seed=6)["low"]
    # r and reliability are resampled together: with r = 0.5·reliability every resample's ratio is 0.5
    same = ceiled_score(0.5 * rel, rel, convention="brainscore")
    assert same["low"] == pytest.approx(0.5, abs=1e-12) and same["high"] == pytest.approx(0.5, abs=1e-12)
    wide = ceiled_score(r, rel, seed=5, ci=0.99)
    narrow = ceiled_score(r, rel, seed=5, ci=0.5)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


# ---------------------------------------------------------------- regression


def test_folds_partition_and_errors():
    fs = reg.folds(23, 5, seed=0)
    assert len(fs) == 5 and sorted(len(te) for _, te in fs) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate([te for _, te in fs])), np.arange(23))
    for tr, te in fs:
        assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == 23
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(fs, reg.folds(23, 5, seed=0)))
    assert not np.array_equal(fs[0][1], reg.folds(23, 5, seed=1)[0][1])
    assert not np.array_equal(fs[0][1], np.arange(5))  # shuffled
    for k in (1, 24, 2.5):
        with pytest.raises(NeuralDataError, match="k in 2..23"):
            reg.folds(23, k)


@pytest.mark.parametrize("D", [10, 80])  # D < n: himalaya RidgeCV; D > n: KernelRidgeCV (linear kernel)
def test_ridge_fixed_alpha_matches_closed_form(D, monkeypatch):
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV

    used = []

    def spy(cls):
        fit = cls.fit
        return lambda self, *a, **k: (used.append(cls.__name__), fit(self, *a, **k))[1]

    for cls in (RidgeCV, KernelRidgeCV):
        monkeypatch.setattr(cls, "fit", spy(cls))
    rng = np.random.default_rng(4)
    X, Y, Xt = rng.normal(size=(40, D)) + 2, rng.normal(size=(40, 3)) + 5, rng.normal(size=(7, D))
    ref = _ridge_ref(X, Y, Xt, 3.0)
    np.testing.assert_allclose(reg.fit_predict(X, Y, Xt, alphas=[3.0]), ref, rtol=0, atol=1e-6)
    assert used == ["KernelRidgeCV" if D > 40 else "RidgeCV"]
    # himalaya's torch backend (CPU here; "torch_cuda" is the same code on the GPU) agrees, and the
    # previous backend is restored afterwards
    from himalaya.backend import get_backend

    np.testing.assert_allclose(reg.fit_predict(X, Y, Xt, alphas=[3.0], backend="torch"), ref, rtol=0, atol=1e-6)
    assert get_backend().name == "numpy"
    np.testing.assert_allclose(reg.fit_predict(X, Y[:, 0], Xt, alphas=[3.0]), ref[:, 0], rtol=0, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("D", [10, 80])
def test_ridge_torch_cuda_backend_matches_closed_form(D):
    from himalaya.backend import get_backend

    rng = np.random.default_rng(4)
    X, Y, Xt = rng.normal(size=(40, D)) + 2, rng.normal(size=(40, 3)) + 5, rng.normal(size=(7, D))
    P = reg.fit_predict(X, Y, Xt, alphas=[3.0], backend="torch_cuda")
    np.testing.assert_allclose(P, _ridge_ref(X, Y, Xt, 3.0), rtol=0, atol=1e-6)
    assert isinstance(P, np.ndarray) and get_backend().name == "numpy"


def test_ridge_alpha_per_target():
    # target 0 is an exact linear function of X (wants a tiny alpha), target 1 pure noise (wants a
    # large one): with one alpha per target, fitting both together equals fitting each alone
    rng = np.random.default_rng(5)
    X = rng.normal(size=(100, 20))
    Y = np.stack([X @ rng.normal(size=20), rng.normal(size=100)], axis=1)
    P = reg.fit_predict(X[:80], Y[:80], X[80:])
    for j in range(2):
        np.testing.assert_allclose(P[:, j], reg.fit_predict(X[:80], Y[:80, j], X[80:]), rtol=0, atol=1e-8)
    assert np.corrcoef(P[:, 0], Y[80:, 0])[0, 1] > 0.999
    assert P[:, 1].std() < 0.5 * Y[:, 1].std()  # shrunk


def test_constant_features_predict_training_mean():
    rng = np.random.default_rng(6)
    Y = rng.normal(size=(30, 4))
    for kw in ({}, {"method": "pls"}, {"pca": 3}, {"scale": True}):
        P = reg.fit_predict(np.zeros((30, 5)), Y, rng.normal(size=(6, 5)), **kw)
        np.testing.assert_allclose(P, np.broadcast_to(Y.mean(0), (6, 4)), rtol=0, atol=1e-12)
    with pytest.raises(NeuralDataError, match="unknown mapping method"):
        reg.fit_predict(np.zeros((30, 5)), Y, np.zeros((2, 5)), method="lasso")
    with pytest.raises(NeuralDataError, match="X_train contains NaN"):
        reg.fit_predict(np.full((30, 5), np.nan), Y, np.zeros((2, 5)))


def test_cross_validated_r_linear_and_null():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 30))
    Y = X @ rng.normal(size=(30, 20)) + 0.3 * rng.normal(size=(200, 20))
    r, P = reg.cross_validated_r(X, Y, pooled=True)
    assert r.shape == (20,) and P.shape == Y.shape and r.min() > 0.95
    np.testing.assert_allclose(r, pearson_columns(P, Y), atol=1e-15)  # r of the pooled predictions
    r_default, _ = reg.cross_validated_r(X, Y)  # default: r per fold, then averaged
    assert r_default.min() > 0.95 and not np.allclose(r_default, r)
    Xs = X[rng.permutation(200)]  # images shuffled: X carries nothing about Y
    r_fold, _ = reg.cross_validated_r(Xs, Y, pooled=False)
    assert abs(np.median(r_fold)) < 0.1
    r_pool, _ = reg.cross_validated_r(Xs, Y, pooled=True)
    assert -0.2 < np.median(r_pool) < 0.02  # pooled: biased downwards (see docstring)
    # features that carry nothing: pooled r ≈ −sqrt((k−1)/S) (fold means); per fold: NaN → scored 0
    r0, P0 = reg.cross_validated_r(np.zeros((400, 3)), rng.normal(size=(400, 10)), pooled=True)
    assert abs(np.median(r0) + 0.1) < 0.05
    r0f, _ = reg.cross_validated_r(np.zeros((400, 3)), rng.normal(size=(400, 10)), pooled=False)
    assert np.isnan(r0f).all() and ceiled_score(r0f, np.full(10, 0.8))["raw"] == 0.0


def test_pca_is_fitted_on_training_images_only(monkeypatch):
    from sklearn.decomposition import PCA as SkPCA

    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 25)) * np.linspace(3, 0.2, 25)
    Y = X[:, :5] @ rng.normal(size=(5, 4)) + 0.1 * rng.normal(size=(60, 4))
    tr, te = np.arange(45), np.arange(45, 60)
    Xte = X[te] + 4 * rng.normal(size=(15, 25))  # test images far off the training distribution
    # reference: scikit-learn PCA fitted on X_train alone, then closed-form ridge on the scores
    sk = SkPCA(6).fit(X[tr])
    ref = _ridge_ref(sk.transform(X[tr]), Y[tr], sk.transform(Xte), 2.0)
    np.testing.assert_allclose(reg.fit_predict(X[tr], Y[tr], Xte, alphas=[2.0], pca=6), ref, rtol=0, atol=1e-6)
    # within cross-validation every PCA fit sees exactly the training rows of its fold
    seen = []
    fit = reg.PCA.fit
    monkeypatch.setattr(reg.PCA, "fit", lambda self, A: (seen.append(np.array(A)), fit(self, A))[1])
    reg.cross_validated_r(X, Y, k=4, seed=3, pca=6)
    expected = [X[train] for train, _ in reg.folds(60, 4, 3)]
    assert len(seen) == 4 and all(np.array_equal(s, e) for s, e in zip(seen, expected))
    assert reg.PCA(100).fit(X[:10]).n_components_ == 9  # min(requested, n_train − 1, D)


def test_pls_recovers_low_rank_map():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(200, 40))
    W = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 15))  # rank 3
    Y = X @ W + 0.5 * rng.normal(size=(200, 15))
    r, _ = reg.cross_validated_r(X, Y, method="pls", n_components_pls=5)
    assert r.min() > 0.9


def test_map_bins_scores_each_bin_on_its_own():
    rng = np.random.default_rng(10)
    S, N, B, D = 120, 6, 3, 15
    feats = rng.normal(size=(B, S, D))
    resp = rng.normal(size=(S, N, B))
    resp[:, :, 0] = feats[0] @ rng.normal(size=(D, N)) + 0.2 * rng.normal(size=(S, N))  # only bin 0 is linear
    out = reg.map_bins(feats, resp, k=4, seed=2)
    assert out.shape == (B, N) and out[0].min() > 0.9 and np.abs(np.median(out[1:], axis=1)).max() < 0.3
    for b in range(B):  # each bin equals its own cross_validated_r with the same folds
        np.testing.assert_array_equal(out[b], reg.cross_validated_r(feats[b], resp[:, :, b], k=4, seed=2)[0])
    resp2 = resp.copy()
    resp2[:, :, 1:] = rng.normal(size=(S, N, B - 1))
    np.testing.assert_array_equal(reg.map_bins(feats, resp2, k=4, seed=2)[0], out[0])
    with pytest.raises(NeuralDataError, match="each of its B bins"):
        reg.map_bins(feats[:2], resp)
