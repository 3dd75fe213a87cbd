"""Cross-validated linear mappings from model features to neurons, one time bin at a time.

Plain NumPy in and out. Ridge regression uses himalaya (imported on first use; per-target alphas
by inner cross-validation, NumPy or PyTorch backends); PLS uses scikit-learn. Every statistic the
mapping needs (feature means, PCA axes, alphas, weights) is fitted on the training images only.

* :func:`folds` — shuffled K-fold over images;
* :func:`fit_predict` — fit on training images, predict held-out ones;
* :func:`cross_validated_r` — Pearson r per neuron on held-out images (per fold, then averaged);
* :func:`map_bins` — the same for each time bin, with the same folds.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import NeuralDataError
from .stats import pearson_columns

__all__ = ["folds", "PCA", "fit_predict", "cross_validated_r", "map_bins"]

DEFAULT_ALPHAS = np.logspace(-3, 7, 21)


def folds(n: int, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold split of ``n`` images: ``[(train_idx, test_idx), ...]``, ``k`` pairs.

    The images are shuffled with ``numpy.random.default_rng(seed).permutation(n)`` and cut into
    ``k`` contiguous parts of sizes differing by at most one (``numpy.array_split``); part ``i`` is
    the test set of fold ``i``. Every image is tested exactly once. Indices are sorted within each
    set. Deterministic given ``seed``. ``k`` must be an integer in ``2..n``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise NeuralDataError(f"k-fold cross-validation needs an integer k in 2..{n} (the number of images), got {k!r}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(p)) for i, p in enumerate(parts)]


class PCA:
    """Principal components fitted on training images only (SVD of the centred training matrix).

    ``n_components_ = min(n_components, n_train − 1, D)`` (a centred matrix of n rows has rank at
    most n − 1). ``transform(X) = (X − mean_train) @ components_.T``.
    """

    def __init__(self, n_components: int):
        if n_components < 1:
            raise NeuralDataError(f"PCA needs at least 1 component, got {n_components}")
        self.n_components = int(n_components)

    def fit(self, X) -> "PCA":
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.n_components_ = max(1, min(self.n_components, X.shape[0] - 1, X.shape[1]))
        _, _, vt = np.linalg.svd(X - self.mean_, full_matrices=False)
        self.components_ = vt[: self.n_components_]
        return self

    def transform(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_.T


def fit_predict(X_train, Y_train, X_test, *, method: str = "ridge", alphas=DEFAULT_ALPHAS, inner_cv: int = 5,
                inner_seed: int = 0, n_components_pls: int = 25, pca: int | None = None, scale: bool = False,
                backend: str = "numpy") -> np.ndarray:
    """Fit a linear map from features to neurons on training images; predict the test images.

    ``X_train [n, D]``, ``Y_train [n, N]`` (or ``[n]``), ``X_test [m, D]`` → ``Y_pred [m, N]`` (or ``[m]``).

    Preprocessing, from training images only: ``pca=k`` first replaces X by its first ``k``
    principal components (:class:`PCA` fitted on ``X_train``, applied to both). Then X is centred
    with the training mean ``μ_X`` (and, with ``scale=True``, divided by the training standard
    deviation; features constant in training are left unscaled; the default is centring only).
    Y is centred with the training mean ``μ_Y``, which is added back to the predictions. If every
    feature is constant on the training images (e.g. all zeros) or every target is, nothing can be
    learnt and the prediction is ``μ_Y`` for every test image.

    ``method="ridge"``: ``w = argmin ||X̃ w − Ỹ||² + α ||w||²`` on centred data, i.e.
    ``w = (X̃ᵀX̃ + αI)⁻¹ X̃ᵀỸ``, with one ``α`` per neuron picked from ``alphas`` by an inner
    ``inner_cv``-fold cross-validation on the training images (shuffled, ``random_state=inner_seed``;
    squared-error loss), then refitted on all training images (himalaya). When ``D > n`` the
    equivalent dual form ``Ŷ = K_test (K + αI)⁻¹ Ỹ`` with the linear kernel ``K = X̃ X̃ᵀ`` is
    solved (``himalaya.kernel_ridge.KernelRidgeCV``: an n × n problem), otherwise the primal
    (``himalaya.ridge.RidgeCV``: D × D). ``backend`` is a himalaya backend — ``"numpy"``,
    ``"torch"`` (CPU) or ``"torch_cuda"`` (runs on the GPU) — set for the call and restored after.

    ``method="pls"``: ``sklearn.cross_decomposition.PLSRegression`` with
    ``min(n_components_pls, n − 1, D)`` components and ``scale=False``.
    """
    X_train, X_test = np.asarray(X_train, dtype=np.float64), np.asarray(X_test, dtype=np.float64)
    Y_train = np.asarray(Y_train, dtype=np.float64)
    ravel = Y_train.ndim == 1
    Y2 = Y_train[:, None] if ravel else Y_train
    if X_train.ndim != 2 or X_test.ndim != 2 or Y2.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise NeuralDataError(f"need X_train [n, D], Y_train [n, N], X_test [m, D]; got {X_train.shape}, "
                              f"{Y_train.shape}, {X_test.shape}")
    n = X_train.shape[0]
    if Y2.shape[0] != n or n < 2:
        raise NeuralDataError(f"X_train has {n} images and Y_train {Y2.shape[0]}; need the same number, at least 2")
    for name, a in (("X_train", X_train), ("Y_train", Y2), ("X_test", X_test)):
        if not np.all(np.isfinite(a)):
            raise NeuralDataError(f"{name} contains NaN or inf")
    if method not in ("ridge", "pls"):
        raise NeuralDataError(f"unknown mapping method {method!r}; use 'ridge' or 'pls'")

    mu_y = Y2.mean(axis=0)
    Yc = Y2 - mu_y
    if pca is not None:
        p = PCA(pca).fit(X_train)
        X_train, X_test = p.transform(X_train), p.transform(X_test)
    mu_x = X_train.mean(axis=0)
    Xc, Xt = X_train - mu_x, X_test - mu_x
    if scale:
        sd = X_train.std(axis=0)
        sd[sd == 0] = 1.0
        Xc, Xt = Xc / sd, Xt / sd
    if np.all(np.ptp(X_train, axis=0) == 0) or np.all(np.ptp(Y2, axis=0) == 0):
        pred = np.zeros((X_test.shape[0], Y2.shape[1]))
    elif method == "pls":
        from sklearn.cross_decomposition import PLSRegression

        ncomp = max(1, min(n_components_pls, n - 1, Xc.shape[1]))
        pred = PLSRegression(n_components=ncomp, scale=False).fit(Xc, Yc).predict(Xt)
    else:
        pred = _ridge(Xc, Yc, Xt, alphas, inner_cv, inner_seed, backend)
    pred = np.asarray(pred, dtype=np.float64).reshape(X_test.shape[0], -1) + mu_y
    return pred[:, 0] if ravel else pred


def _ridge(Xc, Yc, Xt, alphas, inner_cv, inner_seed, backend):
    """Himalaya ridge with per-target alphas; primal when D <= n, linear-kernel dual when D > n."""
    from himalaya.backend import get_backend, set_backend
    from sklearn.model_selection import KFold

    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if alphas.ndim != 1 or alphas.size == 0 or np.any(alphas <= 0):
        raise NeuralDataError(f"alphas must be a non-empty list of positive numbers, got {alphas}")
    n, D = Xc.shape
    cv = KFold(n_splits=max(2, min(inner_cv, n)), shuffle=True, random_state=inner_seed)
    previous = get_backend().name
    bk = set_backend(backend)
    try:
        if D > n:
            from himalaya.kernel_ridge import KernelRidgeCV

            model = KernelRidgeCV(alphas=alphas, kernel="linear", cv=cv, warn=False)
        else:
            from himalaya.ridge import RidgeCV

            model = RidgeCV(alphas=alphas, cv=cv)
        model.fit(bk.asarray(Xc), bk.asarray(Yc))
        return bk.to_numpy(model.predict(bk.asarray(Xt)))
    finally:
        set_backend(previous)


def _check_xy(X, Y):
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise NeuralDataError(f"need features [S, D] and responses [S, N] for the same S images; "
                              f"got {X.shape} and {Y.shape}")
    return X, Y


def _score(X, Y, splits, pooled, fit_kwargs):
    pred, per_fold = np.empty_like(Y), []
    for train, test in splits:
        pred[test] = fit_predict(X[train], Y[train], X[test], **fit_kwargs)
        per_fold.append(pearson_columns(pred[test], Y[test]))
    if pooled:
        return pearson_columns(pred, Y), pred
    with warnings.catch_warnings():  # 'Mean of empty slice' when a neuron is NaN in every fold
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_fold, axis=0), pred


def cross_validated_r(X, Y, *, k: int = 5, seed: int = 0, pooled: bool = False,
                      **fit_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated Pearson r per neuron for one time bin. Returns ``(r [N], Y_pred [S, N])``.

    ``X [S, D]`` features and ``Y [S, N]`` trial-averaged responses of the same S images. For each
    of the ``k`` folds of :func:`folds` (``seed``) the map is fitted on the training images
    (:func:`fit_predict` with ``fit_kwargs``) and predicts the held-out images; ``Y_pred`` holds
    the held-out predictions of all folds (every image predicted once, by a map that did not see it).

    ``pooled=False`` (default): Brain-Score's convention — ``r_j`` per fold on its held-out images, then the
    mean over folds (NaN folds, i.e. constant predictions, skipped; all NaN gives NaN, which
    :func:`~tnnspec.neural.stats.ceiled_score` counts as 0). Free of the bias below, noisier per
    neuron for small folds; a model that carries nothing scores about 0.

    ``pooled=True``: ``r_j = pearson(Y_pred[:, j], Y[:, j])`` over all S images at once.
    Caveat: each fold's predictions carry that fold's training mean of Y, which is anti-correlated
    with the held-out fold's own mean, so pooling biases r downwards when the map explains little:
    features that carry nothing (all zeros) give r ≈ −sqrt((k − 1)/S) rather than 0 (about −0.1
    for k = 5, S = 400), and an uninformative ridge map (large alpha) nearly as much.
    """
    X, Y = _check_xy(X, Y)
    return _score(X, Y, folds(X.shape[0], k, seed), pooled, fit_kwargs)


def map_bins(features, responses, *, k: int = 5, seed: int = 0, pooled: bool = False,
             predictions: bool = False, **fit_kwargs):
    """Cross-validated r for every time bin. Returns ``[B, N]``; with ``predictions=True``,
    ``(r [B, N], held-out predictions [B, S, N])``.

    ``features``: ``[B, S, D]`` (or a sequence of B arrays ``[S, D_b]``) — model features already
    mapped to each time bin; ``responses``: ``[S, N, B]`` trial-averaged. Bin ``b`` is scored by
    :func:`cross_validated_r` of ``features[b]`` against ``responses[:, :, b]`` on its own (its own
    fitted map and alphas), with the **same** folds for every bin.
    """
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim != 3 or len(features) != responses.shape[2]:
        raise NeuralDataError(f"need responses [S, N, B] and features for each of its B bins; got responses "
                              f"{responses.shape} and features for {len(features)} bins")
    splits = folds(responses.shape[0], k, seed)
    scored = [_score(*_check_xy(features[b], responses[:, :, b]), splits, pooled, fit_kwargs)
              for b in range(responses.shape[2])]
    r = np.stack([x[0] for x in scored])
    return (r, np.stack([x[1] for x in scored])) if predictions else r
