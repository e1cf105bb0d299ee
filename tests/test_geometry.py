"""phasetrans.geometry against closed forms, independent numerical integrals, brute force, cvxpy
and Monte Carlo (fixed seeds; Monte-Carlo tolerances are multiples of the standard error)."""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pytest
from scipy import integrate, special

from phasetrans import geometry as G


def chi_mean(D: int) -> float:
    """E‖g‖ for g ~ N(0, I_D): sqrt(2) Γ((D+1)/2) / Γ(D/2) (poch: no gammaln cancellation)."""
    return math.sqrt(2.0) * float(special.poch(D / 2, 0.5))


def expected_max_abs(D: int) -> float:
    """E max_i |g_i| = ∫_0^∞ 1 − (2Φ(x) − 1)^D dx."""
    return integrate.quad(lambda x: 1.0 - (2.0 * special.ndtr(x) - 1.0) ** D, 0, np.inf,
                          epsabs=0, epsrel=1e-12, limit=200)[0]


# ------------------------------------------------------------------ projected_width_sq, window


def test_projected_width_sq_brute_force_and_vectorised():
    rng = np.random.default_rng(0)
    lam = rng.normal(size=50) * 3
    lam[:5] = 0.0
    w = rng.uniform(0, 2, size=50)
    eps, Rs = 0.7, np.array([0.0, 0.3, 1.0, 4.0])
    got = G.projected_width_sq(lam, w, eps, Rs)
    r2 = np.where(lam == 0, np.inf, 2 * eps / np.maximum(np.abs(lam), 1e-300))
    for R, val in zip(Rs, got):
        terms = np.where(np.isinf(r2), w, w * r2 / (R**2 + np.where(np.isinf(r2), 0, r2)))
        assert val == pytest.approx(float(terms.sum()), rel=1e-13)
    assert got[0] == pytest.approx(w.sum(), rel=1e-14)  # R = 0: everything counts
    assert np.all(np.diff(got) < 0)
    assert isinstance(G.projected_width_sq(lam, None, eps, 1.0), float)
    with pytest.raises(ValueError, match="R"):
        G.projected_width_sq(lam, None, eps, -1.0)
    with pytest.raises(ValueError, match="eps"):
        G.projected_width_sq(lam, None, 0.0, 1.0)
    with pytest.raises(ValueError, match="weights"):
        G.projected_width_sq(lam, w[:3], eps, 1.0)


def test_kinematic_window():
    assert G.kinematic_window(100, 0.01) == pytest.approx(math.sqrt(8 * math.log(400)) / 10, rel=1e-15)
    with pytest.raises(ValueError, match="eta"):
        G.kinematic_window(100, 0.0)
    with pytest.raises(TypeError, match="D"):
        G.kinematic_window(10.0, 0.1)


# ------------------------------------------------------------------ ellipsoid width


@pytest.mark.parametrize("D", [1, 2, 3, 10, 257, 100_000])
def test_ellipsoid_width_equal_radii_is_chi_mean(D):
    for r in (1.0, 3.7e-4, 2.5e5):
        assert G.ellipsoid_width(np.full(D, r)) == pytest.approx(r * chi_mean(D), rel=1e-11)


def test_ellipsoid_width_against_quad_of_the_defining_integral():
    # quad on the t-integral itself (no substitution), split at 1/Σr²: an independent evaluation
    rng = np.random.default_rng(1)
    for r in (np.array([1e-3, 0.1, 1, 5, 5, 20.0]), np.exp(rng.uniform(-6, 6, 40)), np.array([2.0, 1e-9]),
              np.exp(rng.uniform(-1, 1, 3000))):
        S = float((r**2).sum())

        def f(t, r=r):
            return -np.expm1(-0.5 * np.log1p(2 * t * r**2).sum()) * t**-1.5

        pieces = [0, 1e-3 / S, 1 / S, 1e3 / S, np.inf]
        total = sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=500)[0]
                    for a, b in zip(pieces[:-1], pieces[1:]))
        assert G.ellipsoid_width(r) == pytest.approx(total / (2 * math.sqrt(math.pi)), rel=1e-10)


def test_ellipsoid_width_against_monte_carlo():
    rng = np.random.default_rng(2)
    r = np.array([3.0, 1.0, 1.0, 0.5, 0.1, 0.1, 0.1, 0.01])
    vals = np.linalg.norm(rng.standard_normal((400_000, r.size)) * r, axis=1)
    se = vals.std(ddof=1) / math.sqrt(vals.size)
    assert abs(G.ellipsoid_width(r) - vals.mean()) < 4 * se
    # the same through the generic estimator and the ellipsoid's support function ‖diag(r) g‖
    est = G.gaussian_width_mc(lambda g: np.linalg.norm(g * r, axis=1), r.size, 200_000, 3, batched=True)
    assert abs(G.ellipsoid_width(r) - est.value) < 4 * est.stderr


def test_ellipsoid_width_special_cases_and_bounds():
    assert G.ellipsoid_width([2.0]) == pytest.approx(2.0 * math.sqrt(2 / math.pi), rel=1e-13)
    assert G.ellipsoid_width([0.0, 0.0]) == 0.0
    assert G.ellipsoid_width([1.0, 0.0, 2.0]) == pytest.approx(G.ellipsoid_width([2.0, 1.0]), rel=1e-14)
    assert G.ellipsoid_width([1.0, np.inf]) == math.inf
    rng = np.random.default_rng(4)
    for _ in range(20):
        r = np.exp(rng.uniform(-5, 5, rng.integers(1, 30)))
        lo, hi = G.ellipsoid_width_bounds(r)
        w = G.ellipsoid_width(r)
        assert lo * (1 - 1e-12) <= w <= hi
    lo, hi = G.ellipsoid_width_bounds([3.0])
    assert lo == pytest.approx(G.ellipsoid_width([3.0]), rel=1e-13)  # tight in 1-D
    assert hi == 3.0


def test_ellipsoid_width_validates():
    with pytest.raises(ValueError, match="radii"):
        G.ellipsoid_width([1.0, -1.0])
    with pytest.raises(ValueError, match="radii"):
        G.ellipsoid_width([[1.0]])
    with pytest.raises(ValueError, match="radii"):
        G.ellipsoid_width([np.nan])
    with pytest.raises(TypeError, match="radii"):
        G.ellipsoid_width("abc")
    with pytest.raises(ValueError, match="radii"):
        G.ellipsoid_width_bounds([])


# ------------------------------------------------------------------ circular cone


def circ_intrinsic_volume_statdim(D: int, alpha: float) -> float:
    """Σ_k k v_k with v_k = ½ binom((D−2)/2, (k−1)/2) sin^{k−1}α cos^{D−k−1}α (Amelunxen et al.
    2014, §D.4) for 1 ≤ k ≤ D−1 and v_D = P(angle ≤ α) by direct quadrature of sin^{D−2}."""
    total = 0.0
    h = (D - 2) / 2
    for k in range(1, D):
        b = (k - 1) / 2
        binom = math.exp(special.gammaln(h + 1) - special.gammaln(b + 1) - special.gammaln(h - b + 1))
        total += k * 0.5 * binom * math.sin(alpha) ** (k - 1) * math.cos(alpha) ** (D - k - 1)
    num = integrate.quad(lambda t: math.sin(t) ** (D - 2), 0, alpha, epsabs=0, epsrel=1e-13)[0]
    den = integrate.quad(lambda t: math.sin(t) ** (D - 2), 0, math.pi, epsabs=0, epsrel=1e-13)[0]
    return total + D * num / den


@pytest.mark.parametrize("D", [3, 4, 7, 20, 61])
@pytest.mark.parametrize("alpha", [0.05, 0.4, 0.9, 1.3, 1.55])
def test_circular_cone_statdim_intrinsic_volumes(D, alpha):
    assert G.circular_cone_statdim(D, alpha) == pytest.approx(circ_intrinsic_volume_statdim(D, alpha), rel=1e-11)


def test_circular_cone_statdim_special_angles_and_large_D():
    for D in (2, 3, 10, 1001, 10**6):
        assert G.circular_cone_statdim(D, 0.0) == pytest.approx(0.5, rel=1e-9)  # a ray
        assert G.circular_cone_statdim(D, math.pi / 4) == pytest.approx(D / 2, rel=1e-9)  # self-dual
        assert G.circular_cone_statdim(D, math.pi / 2) == pytest.approx(D - 0.5, rel=1e-9)  # halfspace
    for a in (0.1, 0.7, 1.4):  # R²: a wedge of angle 2α, δ = 2α/π + 1/2
        assert G.circular_cone_statdim(2, a) == pytest.approx(2 * a / math.pi + 0.5, rel=1e-13)
    for D in (1000, 10**5):  # D sin²α + cos 2α is accurate at large D
        for a in (0.2, 0.8, 1.2):
            approx = D * math.sin(a) ** 2 + math.cos(2 * a)
            assert G.circular_cone_statdim(D, a) == pytest.approx(approx, rel=1e-2)
    vals = [G.circular_cone_statdim(50, a) for a in np.linspace(0, math.pi / 2, 30)]
    assert np.all(np.diff(vals) > 0)


def test_circular_cone_statdim_against_monte_carlo():
    for D, alpha in ((5, 0.3), (40, 1.0)):
        est = G.statistical_dimension_mc(G.circular_cone_projector(alpha), D, 100_000, 5, batched=True)
        assert abs(est.value - G.circular_cone_statdim(D, alpha)) < 4 * est.stderr


def test_circular_cone_projector_cvxpy_and_moreau():
    rng = np.random.default_rng(6)
    D, alpha = 6, 0.5
    axis = rng.standard_normal(D)
    u = axis / np.linalg.norm(axis)
    P = G.circular_cone_projector(alpha, axis)
    Ppolar = G.circular_cone_projector(math.pi / 2 - alpha, -axis)  # polar of Circ(α) is Circ(π/2−α) at −u
    g = rng.standard_normal((200, D))
    Z = P(g)
    np.testing.assert_allclose(Z + Ppolar(g), g, atol=1e-13)  # Moreau decomposition
    np.testing.assert_allclose(np.einsum("ij,ij->i", Z, g - Z), 0, atol=1e-12)
    np.testing.assert_allclose(P(Z), Z, atol=1e-13)
    for i in range(3):
        x = cp.Variable(D)
        cp.Problem(cp.Minimize(cp.sum_squares(x - g[i])), [cp.norm(x) * math.cos(alpha) <= u @ x]).solve(
            solver="CLARABEL")
        np.testing.assert_allclose(P(g[i]), x.value, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        G.circular_cone_projector(2.0)
    with pytest.raises(ValueError, match="alpha"):
        G.circular_cone_statdim(5, -0.1)
    with pytest.raises(ValueError, match="D"):
        G.circular_cone_statdim(1, 0.3)


# ------------------------------------------------------------------ l1 descent cone


def J_by_quadrature(tau: float, d: int, s: int) -> float:
    tail = integrate.quad(lambda u: (u - tau) ** 2 * math.exp(-u * u / 2), tau, np.inf, epsabs=0, epsrel=1e-13)[0]
    return s * (1 + tau**2) + (d - s) * math.sqrt(2 / math.pi) * tail


@pytest.mark.parametrize("d,s", [(100, 10), (1000, 1), (50, 49), (10_000, 300)])
def test_l1_statdim_matches_brute_force_grid(d, s):
    grid = np.linspace(0, 6, 601)
    vals = [J_by_quadrature(t, d, s) for t in grid]
    i = int(np.argmin(vals))
    fine = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, 600)], 401)
    best = min(J_by_quadrature(t, d, s) for t in fine)
    got = G.l1_descent_cone_statdim(d, s)
    assert got == pytest.approx(best, rel=1e-6)
    assert got <= best * (1 + 1e-12)  # it is the infimum


def test_l1_statdim_edges_and_validation():
    assert G.l1_descent_cone_statdim(10, 0) == 0.0
    assert G.l1_descent_cone_statdim(10, 10) == 10.0
    vals = [G.l1_descent_cone_statdim(200, s) for s in range(0, 201, 10)]
    assert np.all(np.diff(vals) > 0)
    with pytest.raises(ValueError, match="s"):
        G.l1_descent_cone_statdim(10, 11)
    with pytest.raises(TypeError, match="d"):
        G.l1_descent_cone_statdim(10.5, 1)


def test_l1_descent_cone_projector_against_cvxpy():
    # the descent cone directly: {y : ⟨sign x_S, y_S⟩ + ‖y_{S^c}‖₁ ≤ 0} (directional derivative ≤ 0)
    rng = np.random.default_rng(7)
    d = 15
    x = np.zeros(d)
    x[[1, 4, 9]] = [1.5, -0.3, 2.0]
    S = x != 0
    P = G.l1_descent_cone_projector(x)
    for _ in range(4):
        g = rng.standard_normal(d) * 2
        y = cp.Variable(d)
        cons = [np.sign(x[S]) @ y[S] + cp.norm1(y[~S]) <= 0]
        prob = cp.Problem(cp.Minimize(cp.sum_squares(y - g)), cons)
        prob.solve(solver="CLARABEL")
        z = P(g)
        assert np.sign(x[S]) @ z[S] + np.abs(z[~S]).sum() <= 1e-12  # feasible
        assert ((z - g) ** 2).sum() <= prob.value + 1e-7  # and at least as good as cvxpy
        np.testing.assert_allclose(z, y.value, atol=1e-5)
    g = rng.standard_normal((500, d))
    Z = P(g)
    np.testing.assert_allclose(np.einsum("ij,ij->i", Z, g - Z), 0, atol=1e-12)
    assert np.all(Z[:, S] @ np.sign(x[S]) + np.abs(Z[:, ~S]).sum(1) <= 1e-12)
    np.testing.assert_array_equal(G.l1_descent_cone_projector(np.zeros(4))(g[:, :4]), 0)


def test_l1_statdim_against_exact_projection_monte_carlo():
    d, s = 100, 10
    x = np.zeros(d)
    x[:s] = np.random.default_rng(8).standard_normal(s)
    est = G.statistical_dimension_mc(G.l1_descent_cone_projector(x), d, 20_000, 9, batched=True)
    bound = G.l1_descent_cone_statdim(d, s)
    # Amelunxen et al. Prop 4.5: bound − 2 sqrt(d/s) ≤ δ ≤ bound
    assert bound - 2 * math.sqrt(d / s) - 4 * est.stderr <= est.value <= bound + 4 * est.stderr
    assert est.value < bound  # the bound is strict here (measured 32.36 ± 0.07 vs 32.88)


# ------------------------------------------------------------------ Monte-Carlo estimators


def test_statistical_dimension_mc_known_cones():
    D = 30
    orth = G.statistical_dimension_mc(lambda g: np.maximum(g, 0), D, 20_000, 0)
    assert abs(orth.value - D / 2) < 4 * orth.stderr
    assert orth.num_samples == 20_000
    sub = G.statistical_dimension_mc(lambda g: np.concatenate([g[..., :7], 0 * g[..., 7:]], -1), D, 5000, 1,
                                     batched=True)
    assert abs(sub.value - 7) < 4 * sub.stderr
    a = G.statistical_dimension_mc(lambda g: np.maximum(g, 0), D, 300, 2, batched=False)
    b = G.statistical_dimension_mc(lambda g: np.maximum(g, 0), D, 300, 2, batched=True)
    assert a == b
    with pytest.raises(TypeError, match="project"):
        G.statistical_dimension_mc(3, D)
    with pytest.raises(ValueError, match="project"):
        G.statistical_dimension_mc(lambda g: g[:2], D, 10, 0)
    with pytest.raises(ValueError, match="num_samples"):
        G.statistical_dimension_mc(lambda g: g, D, 1, 0)
    with pytest.raises(ValueError, match="seed"):
        G.statistical_dimension_mc(lambda g: g, D, 10, -1)


def test_gaussian_width_mc_balls():
    D = 25
    ball = G.gaussian_width_mc(np.linalg.norm, D, 20_000, 0)
    assert abs(ball.value - chi_mean(D)) < 4 * ball.stderr
    cube = G.gaussian_width_mc(lambda g: np.abs(g).sum(1), D, 20_000, 1, batched=True)  # [−1,1]^D
    assert abs(cube.value - D * math.sqrt(2 / math.pi)) < 4 * cube.stderr
    cross = G.gaussian_width_mc(lambda g: np.abs(g).max(1), D, 20_000, 2, batched=True)  # l1 ball
    assert abs(cross.value - expected_max_abs(D)) < 4 * cross.stderr
    with pytest.raises(ValueError, match="support"):
        G.gaussian_width_mc(lambda g: np.ones(3), D, 10, 0, batched=True)
    with pytest.raises(TypeError, match="dim"):
        G.gaussian_width_mc(np.linalg.norm, 2.0)


# ------------------------------------------------------------------ ellipsoid projection and cone


def test_project_onto_ellipsoid_against_cvxpy():
    rng = np.random.default_rng(10)
    r = np.array([3.0, 1.0, 0.2, 0.0, np.inf, 1e-3])
    y = rng.standard_normal((5, r.size)) * 4
    X = G.project_onto_ellipsoid(y, r)
    fin = np.isfinite(r) & (r > 0)
    for i in range(3):
        x = cp.Variable(r.size)
        cons = [cp.sum_squares(cp.multiply(1 / r[fin], x[fin])) <= 1, x[r == 0] == 0]
        prob = cp.Problem(cp.Minimize(cp.sum_squares(x - y[i])), cons)
        prob.solve(solver="CLARABEL")
        assert ((X[i, fin] / r[fin]) ** 2).sum() <= 1 + 1e-13 and X[i, 3] == 0  # feasible
        assert ((X[i] - y[i]) ** 2).sum() <= prob.value + 1e-8  # and at least as good as cvxpy
        np.testing.assert_allclose(X[i], x.value, atol=1e-4)
    inside = np.array([0.1, 0.1, 0.01, 0.0, 7.0, 0.0])
    np.testing.assert_array_equal(G.project_onto_ellipsoid(inside, r), inside)
    with pytest.raises(ValueError, match="y"):
        G.project_onto_ellipsoid(np.ones(3), r)


def test_ellipsoid_cone_projector_isotropic_is_circular_cone():
    rng = np.random.default_rng(11)
    D, rad, dist = 30, 2.0, 5.0
    p = rng.standard_normal(D)
    p *= dist / np.linalg.norm(p)
    g = rng.standard_normal((500, D))
    Pe = G.ellipsoid_cone_projector(np.full(D, rad), p)
    Pc = G.circular_cone_projector(math.asin(rad / dist), -p)
    np.testing.assert_allclose(Pe(g), Pc(g), atol=1e-11)


@pytest.mark.parametrize("D", [3, 25])
def test_ellipsoid_cone_projector_cvxpy_and_optimality(D):
    rng = np.random.default_rng(12)
    r = np.exp(rng.uniform(-3, 1, D)) if D > 3 else np.array([1.0, 0.5, 0.3])
    p = rng.standard_normal(D) * 0.5
    p *= 1.5 / math.sqrt((p**2 / r**2).sum())  # Σ p²/r² = 2.25: outside, but not far
    P = G.ellipsoid_cone_projector(r, p)
    g = rng.standard_normal((1000, D))
    Z = P(g)
    Y = g - Z
    # Moreau: Z ⊥ g − Z, g − Z in the polar {y : ‖diag(r) y‖ ≤ ⟨p, y⟩}, Z in the cone
    np.testing.assert_allclose(np.einsum("ij,ij->i", Z, Y), 0, atol=1e-10)
    assert np.all(np.linalg.norm(Y * r, axis=1) - Y @ p <= 1e-10)
    c2, cross, a = ((Z / r) ** 2).sum(1), (Z * p / r**2).sum(1), (p**2 / r**2).sum() - 1
    # Z ∈ cone ⟺ min_t≥0 ‖(Z + t p)/r‖² − t² ≤ 0, min at t = −cross/a
    assert np.all((cross <= 1e-9) & (c2 - cross**2 / a <= 1e-8 * (1 + c2)))
    if D == 3:  # all three branches occur: g ∈ C° (Z = 0), g ∈ C (Z = g), boundary
        polar, inside = np.all(Z == 0, axis=1), np.abs(Y).max(1) < 1e-9
        assert polar.mean() > 0.02 and inside.mean() > 0.02 and (polar | inside).mean() < 0.9
    for i in range(4):
        u, t = cp.Variable(D), cp.Variable()
        prob = cp.Problem(cp.Minimize(cp.sum_squares(u - t * p - g[i])), [cp.norm(cp.multiply(1 / r, u)) <= t])
        prob.solve(solver="CLARABEL")
        assert ((g[i] - Z[i]) ** 2).sum() <= prob.value + 1e-8
        np.testing.assert_allclose(Z[i], u.value - t.value * p, atol=1e-5)


def test_ellipsoid_cone_infinite_and_zero_radii():
    rng = np.random.default_rng(13)
    r = np.array([1.0, 0.5, np.inf, 0.0, 2.0, np.inf])
    p = np.array([3.0, -1.0, 5.0, 0.7, 0.2, -2.0])
    P = G.ellipsoid_cone_projector(r, p)
    g = rng.standard_normal((4, r.size))
    Z = P(g)
    np.testing.assert_array_equal(Z[:, np.isinf(r)], g[:, np.isinf(r)])  # free directions
    fin = np.isfinite(r)
    np.testing.assert_allclose(Z[:, fin], G.ellipsoid_cone_projector(r[fin], p[fin])(g[:, fin]), atol=1e-14)
    # cvxpy with a flat axis (r = 0): u_3 = 0
    rf, pf = r[fin], p[fin]
    for i in range(2):
        u, t = cp.Variable(4), cp.Variable()
        pos = rf > 0
        cons = [cp.norm(cp.multiply(1 / rf[pos], u[pos])) <= t, u[~pos] == 0]
        cp.Problem(cp.Minimize(cp.sum_squares(u - t * pf - g[i, fin])), cons).solve(solver="CLARABEL")
        np.testing.assert_allclose(Z[i, fin], u.value - t.value * pf, atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        G.ellipsoid_cone_projector([1.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="point"):
        G.ellipsoid_cone_projector([1.0, 1.0], [0.5, 0.5, 3.0])


def test_ellipsoid_cone_statdim_mc_isotropic_closed_form():
    D, rad, dist = 40, 1.0, 2.0
    p = np.zeros(D)
    p[3] = dist
    est = G.ellipsoid_cone_statdim_mc(np.full(D, rad), p, 4000, 0)
    exact = G.circular_cone_statdim(D, math.asin(rad / dist))
    assert abs(est.value - exact) < 4 * est.stderr
    with_free = G.ellipsoid_cone_statdim_mc(np.concatenate([np.full(D, rad), [np.inf] * 5]),
                                            np.concatenate([p, np.ones(5)]), 4000, 0)
    assert abs(with_free.value - exact - 5) < 4 * with_free.stderr


# ------------------------------------------------------------------ l1-regularised quadratic sublevel set


def _random_psd(rng, D, lo=-2, hi=2):
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.exp(rng.uniform(lo, hi, D))
    return (Q * lam) @ Q.T, lam, Q


def test_l1_quadratic_width_l1_zero_is_the_ellipsoid():
    rng = np.random.default_rng(14)
    D, level = 15, 0.5
    H, lam, Q = _random_psd(rng, D)
    w0 = rng.standard_normal(D)
    sup = G.l1_quadratic_support(H, w0, 0.0, level)
    for _ in range(3):  # per sample: sup = sqrt(2 level) ‖H^{-1/2} g‖
        g = rng.standard_normal(D)
        assert sup(g) == pytest.approx(math.sqrt(2 * level) * np.linalg.norm((Q.T @ g) / np.sqrt(lam)), rel=1e-6)
    est = G.l1_quadratic_width(H, w0, 0.0, level, 200, 0)
    exact = G.ellipsoid_width(np.sqrt(2 * level / lam))
    assert abs(est.value - exact) < 4 * est.stderr


def test_l1_quadratic_width_zero_hessian_is_the_cross_polytope():
    rng = np.random.default_rng(15)
    D, l1, level = 12, 0.5, 2.0
    w0 = np.zeros(D)
    sup = G.l1_quadratic_support(np.zeros((D, D)), w0, l1, level)
    g = rng.standard_normal(D)
    assert sup(g) == pytest.approx(level / l1 * np.abs(g).max(), rel=1e-6)
    est = G.l1_quadratic_width(np.zeros((D, D)), w0, l1, level, 200, 1)
    assert abs(est.value - level / l1 * expected_max_abs(D)) < 4 * est.stderr


def test_l1_quadratic_width_penalty_shrinks_set_and_minimum_matches_prox():
    rng = np.random.default_rng(16)
    D, l1 = 10, 0.2
    H, lam, _ = _random_psd(rng, D)
    w0 = rng.standard_normal(D)
    level = l1 * np.abs(w0).sum() + 0.5  # objective at w* plus 0.5
    sup_l1 = G.l1_quadratic_support(H, w0, l1, level)
    sup_0 = G.l1_quadratic_support(H, w0, 0.0, level)
    # the l1 set lies inside the l1 = 0 set at the same level: sample by sample, sup is smaller
    for g in rng.standard_normal((5, D)):
        assert sup_l1(g) <= sup_0(g) + 1e-6
    # minimum of the objective vs proximal gradient (ISTA, 20000 steps of size 1/λmax)
    w, step = w0.copy(), 1.0 / lam.max()
    for _ in range(20_000):
        z = w - step * (H @ (w - w0))
        w = np.sign(z) * np.maximum(np.abs(z) - step * l1, 0.0)
    fmin = 0.5 * (w - w0) @ H @ (w - w0) + l1 * np.abs(w).sum()
    assert sup_l1.fmin == pytest.approx(fmin, rel=1e-6)
    with pytest.raises(ValueError, match="empty"):
        G.l1_quadratic_support(H, w0, l1, fmin * (1 - 1e-4))


def test_l1_quadratic_width_validates():
    rng = np.random.default_rng(17)
    D = 6
    H, _, _ = _random_psd(rng, D)
    w0 = np.ones(D)
    with pytest.raises(ValueError, match="empty"):
        G.l1_quadratic_width(H, w0, 1.0, 0.5, 10, 0)  # min of the objective is < 6 but > 0.5
    bad = H.copy()
    bad[0, 0] = -5.0
    with pytest.raises(ValueError, match="positive semidefinite"):
        G.l1_quadratic_width(bad, w0, 0.1, 10.0, 10, 0)
    nonsym = H + np.triu(np.ones((D, D)), 1)
    with pytest.raises(ValueError, match="symmetric"):
        G.l1_quadratic_width(nonsym, w0, 0.1, 10.0, 10, 0)
    with pytest.raises(ValueError, match="unbounded"):
        G.l1_quadratic_width(np.diag([1.0, 0, 1, 1, 1, 1]), w0, 0.0, 1.0, 10, 0)
    with pytest.raises(ValueError, match="closed forms"):
        G.l1_quadratic_width(np.zeros((3001, 3001)), np.zeros(3001), 0.1, 1.0, 10, 0)
    with pytest.raises(ValueError, match="w_star"):
        G.l1_quadratic_width(H, np.ones(D + 1), 0.1, 10.0, 10, 0)
    with pytest.raises(ValueError, match="l1"):
        G.l1_quadratic_width(H, w0, -0.1, 10.0, 10, 0)


# ------------------------------------------------------------------ Donoho–Tanner transition


def test_transition_midpoint_recovers_logistic_centre():
    ks = np.arange(10, 61, 5)
    p = 1 / (1 + np.exp(-(ks - 33.3) / 3.0))
    n = 10**6
    assert G.transition_midpoint(ks, np.round(p * n), n) == pytest.approx(33.3, abs=0.02)
    with pytest.raises(ValueError, match="cross"):
        G.transition_midpoint(ks, np.zeros(ks.size), 5)
    with pytest.raises(ValueError, match="successes"):
        G.transition_midpoint(ks, np.zeros(3), 5)


def test_donoho_tanner_transition_matches_statistical_dimension():
    d, s = 100, 10
    res = G.l1_recovery_transition(d, s, list(range(20, 56, 3)), num_trials=20, seed=0)
    prob = res.probability
    assert prob[0] <= 0.05 and prob[-1] >= 0.95
    k50, pred = res.midpoint(), res.predicted()
    assert pred == pytest.approx(G.l1_descent_cone_statdim(d, s))
    assert abs(k50 - pred) <= res.window(0.01)  # the kinematic formula's guarantee (±69 here)
    # much sharper in practice: exact δ (MC) 32.36, bound 32.88, measured k50 = 31.5
    assert abs(k50 - pred) <= 3.0
    with pytest.raises(ValueError, match="ks"):
        G.l1_recovery_transition(d, s, [0, 10], 2, 0)
    with pytest.raises(ValueError, match="s"):
        G.l1_recovery_transition(d, 0, [10], 2, 0)
