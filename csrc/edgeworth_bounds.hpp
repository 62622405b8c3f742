// Certified bounds of the Edgeworth accountant (Wang, Gao, Zhang, Shen, Su,
// arXiv 2206.04236): the order-1 Edgeworth approximation of the privacy-loss
// CDFs plus a uniform bound Delta_n on its error, due to Derumigny, Girard and
// Guyonvarch (DGG), "Explicit non-asymptotic bounds for the distance to the
// first-order Edgeworth expansion", arXiv 2101.05780 (Sankhya A 86, 2024).
//
// 1. The DGG bound (their Theorem 2.1 in the i.i.d. case with moment
//    conditions only -- "no continuity assumption" -- detailed in their
//    appendix Theorem A.3, eq. (17), remainder r_{1,n}^{iid,skew} of eq. (21),
//    integrated remainder of section C.3.2, e_{2,n} and P_{2,n} of C.2).  For
//    n i.i.d. centred variables with variance s^2 and
//        K3 = E|X|^3 / s^3,            lambda3 = E X^3 / s^3,
//        K3~ = (E|X|^3 + s^2 E|X|) / s^3,   K4 = E X^4 / s^4,
//    and S_n = sum X_i / (s sqrt n):
//        sup_x | P(S_n <= x) - Phi(x) - lambda3 / (6 sqrt n) (1 - x^2) phi(x) |
//            <= Delta_n(eps')   for EVERY eps' in (0, 1/3),
//    with Delta_n written out in dgg_delta_n() below.  The constants and the
//    term structure are those of the authors' R package BoundEdgeworth
//    (function Bound_EE1 with setup continuity = FALSE, iid = TRUE,
//    no_skewness = FALSE; files R/Bound_EE1_nocont.R, R/Rn_iid_integrated.R,
//    R/Constants.R), as released on CRAN (0.1.1 to 0.1.2.x), which gives the
//    published example Bound_EE1(n = 1000, K4 = 9) = 0.1626857.  One deliberate
//    difference: e_3(eps') is taken as exp(eps'^2/6 + eps'^2/(2(1-3eps')^2)),
//    the larger of the two readings of the package's expression; the bound is
//    increasing in e_3, so this is the conservative choice (it moves the
//    published example by 4e-8).  The n^-1 "continuity" version needs a bound
//    on the characteristic function that cannot be verified here: not used.
//    Because every eps' is valid, eps' is optimised numerically.
//
// 2. The privacy-loss bounds.  With F_X, F_Y the CDFs of the summed PLLRs
//    (cgf.hpp), F^_X, F^_Y their order-1 Edgeworth expansions and
//    |F - F^| <= Delta (DGG applied to the centred steps):
//        delta(eps) = P(S_Y > eps) - e^eps P(S_X > eps)
//        delta(eps) <= min(1, 1 - F^_Y + Delta_Y) - e^eps max(0, 1 - F^_X - Delta_X)  = delta_upper
//        delta(eps) >= max(0, 1 - F^_Y - Delta_Y) - e^eps min(1, 1 - F^_X + Delta_X)  = delta_lower
//    Without the clamps these are exactly the paper's
//        1 - F^_Y(eps) +- Delta_Y - e^eps (1 - F^_X(eps) -+ Delta_X);
//    the clamps (probabilities lie in [0, 1]) only tighten them.
//    eps_upper: the first eps >= 0 on a fine grid with delta_upper <= delta,
//    refined by TOMS748 (any eps with delta_upper(eps) <= delta is a valid
//    upper bound on eps(delta), since the true delta(eps) is <= it).
//    eps_lower: the last eps >= 0 on the grid with delta_lower > delta, refined
//    the same way (the true delta(eps') > delta for all eps' <= such an eps,
//    because delta(.) is non-increasing, so eps(delta) >= it).
//
// VACUOUS: a bound is flagged vacuous when no eps makes it say anything:
//   upper: no eps in the scanned range gives delta_upper(eps) <= delta
//          (eps_upper = +inf).  The range ends where both expansions are 40
//          standard deviations out (capped at eps = 1000); beyond it
//          delta_upper = min(1, Delta_Y) to double precision.  So this is what happens
//          once Delta_Y > delta, unless e^eps (1 - F^_X - Delta_X) happens to
//          pull it below delta somewhere;
//   lower: no eps >= 0 gives delta_lower(eps) > delta (eps_lower = 0, the
//          trivial bound).  delta_lower <= 1 - Delta_Y - e^eps Delta_X, so this
//          is what happens when Delta_Y + Delta_X >= 1 - delta, or when
//          delta(0) (a total variation distance) is not above delta + the
//          error terms.
// A finite eps_upper, or a positive eps_lower, is a valid certified
// statement however far it is from the truth; the flags say only whether one
// exists.

// Numerical safety: the moments are integrated to relative tolerance 1e-12
// (and must converge); the standardised moments fed to DGG are inflated by
// a relative 1e-9 (Delta_n is increasing in each of them) and 1e-10 is added
// to each Delta for the quadrature error of the cumulants inside F^.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/math/special_functions/gamma.hpp>

#include "cgf.hpp"
#include "expansions.hpp"
#include "mechanisms.hpp"
#include "quadrature.hpp"
#include "roots.hpp"

namespace edgeworth {

// ---------------------------------------------------------------------------
// Per-step centred moments of the PLLR under the tilt s (s = 0: X under P,
// s = 1: Y under Q).
// ---------------------------------------------------------------------------
struct PllrCentredMoments {
  double mean = 0.0;      // E[L]
  double variance = 0.0;  // E[(L - mean)^2]
  double abs1 = 0.0;      // E|L - mean|
  double abs3 = 0.0;      // E|L - mean|^3
  double third = 0.0;     // E[(L - mean)^3]  (= kappa_3)
  double fourth = 0.0;    // E[(L - mean)^4]
  int panels = 0;         // quadrature panels used

  double sd() const { return std::sqrt(variance); }
  double K3() const { return abs3 / (variance * sd()); }
  double K3tilde() const { return (abs3 + variance * abs1) / (variance * sd()); }
  double K4() const { return fourth / (variance * variance); }
  double lambda3() const { return third / (variance * sd()); }

  // Moments of -L: odd central moments change sign, absolute ones do not.
  PllrCentredMoments negated() const {
    PllrCentredMoments m = *this;
    m.mean = -mean;
    m.third = -third;
    return m;
  }
};

constexpr double kEwbMomentRtol = 1e-12;

namespace ewb_detail {

// Zeros of l(x) - level inside the integration range: the kinks of |l - level|.
inline void add_level_crossings(const Mechanism& m, double level, std::vector<double>& cuts) {
  std::vector<double> c = cuts;
  std::sort(c.begin(), c.end());
  constexpr int kSub = 16;
  std::vector<double> found;
  auto g = [&](double x) { return m.pllr(x) - level; };
  for (std::size_t i = 0; i + 1 < c.size(); ++i) {
    const double a = c[i], b = c[i + 1];
    double xa = a, ga = g(a);
    for (int k = 1; k <= kSub; ++k) {
      const double xb = a + (b - a) * k / kSub, gb = g(xb);
      if (ga == 0.0) {
        found.push_back(xa);
      } else if ((ga < 0.0) != (gb < 0.0) && gb != 0.0) {
        auto tol = [](double u, double v) { return std::fabs(v - u) <= 1e-15 * (1.0 + std::fabs(u)); };
        found.push_back(detail::solve_bracket(g, detail::Bracket{xa, xb, ga, gb}, tol, 200, detail::End::Middle));
      }
      xa = xb;
      ga = gb;
    }
  }
  for (double x : found) cuts.push_back(x);
}

// tilted_range cuts the line where p e^(s l) has fallen e^-80 below its peak.
// The fourth moment weights it by (l - c)^4, which moves mass outwards when
// the moments live in a far tail (small q and small sigma): extend the range
// until log[p e^(s l) (1 + |l - c|)^4] is e^-80 below its largest value seen,
// and split at that largest value.
inline void extend_for_moments(const Mechanism& m, double s, double c, double shift, std::vector<double>& cuts) {
  constexpr double kCut = 80.0;
  auto logg = [&](double x) {
    const double l = m.pllr(x);
    return m.log_p(x) + s * l - shift + 4.0 * std::log1p(std::fabs(l - c));
  };
  std::sort(cuts.begin(), cuts.end());
  double lo = cuts.front(), hi = cuts.back();
  double best = -std::numeric_limits<double>::infinity(), x_best = lo;
  auto see = [&](double x) {
    const double v = logg(x);
    if (v > best) {
      best = v;
      x_best = x;
    }
    return v;
  };
  for (double x : cuts) see(x);
  constexpr int kScan = 64;
  for (int i = 1; i < kScan; ++i) see(lo + (hi - lo) * i / kScan);
  double step = 1.0;
  for (int i = 0; i < 200 && see(hi) - best > -kCut; ++i, step *= 1.5) hi += step;
  step = 1.0;
  for (int i = 0; i < 200 && see(lo) - best > -kCut; ++i, step *= 1.5) lo -= step;
  // refine the location of the largest value on the extended range
  for (int i = 1; i < kScan; ++i) see(lo + (hi - lo) * i / kScan);
  cuts.front() = lo;
  cuts.back() = hi;
  if (x_best > lo && x_best < hi) cuts.push_back(x_best);
}

}  // namespace ewb_detail

// Centred moments of the PLLR of one mechanism under the tilt s in {0, 1},
// centred on the mean K'(s) of tilted_cumulants (computed free of
// cancellation there), by Gauss-Kronrod quadrature to relative tolerance rtol
// with the range split at the mechanism's breakpoints and at l(x) = mean.
inline PllrCentredMoments pllr_centred_moments(const Mechanism& m, double s, double rtol = kEwbMomentRtol) {
  detail::require(s == 0.0 || s == 1.0, "tilt s must be 0 (X under P) or 1 (Y under Q), got " + detail::fmt(s));
  detail::require(rtol > 0.0 && rtol < 1e-3, "rtol must be in (0, 1e-3), got " + detail::fmt(rtol));
  // The centre: K'(s) from tilted_cumulants, free of cancellation for the
  // usual parameters.  Its integration range is chosen for p e^(s l) and can
  // clip the identity integrand of the mean when the moments live in a far
  // tail (e.g. sigma = 0.1, q = 1e-3), so the direct E[l - c] computed below
  // is checked: if it is more than quadrature noise and more than 1e-9 of
  // E|l - c|, the integrals are redone about the corrected centre.
  double c = tilted_cumulants(m, s, 1).derivative[1];
  const detail::TiltedRange range = detail::tilted_range(m, s);
  const double shift = range.shift;
  for (int pass = 0;; ++pass) {
    std::vector<double> cuts = range.cuts;
    ewb_detail::extend_for_moments(m, s, c, shift, cuts);
    ewb_detail::add_level_crossings(m, c, cuts);
    auto f = [&](double x) -> Vec<7> {
      const double l = m.pllr(x);
      const double w = std::exp(m.log_p(x) + s * l - shift);
      const double d = l - c, ad = std::fabs(d), d2 = d * d;
      return {w, w * d, w * d2, w * ad * d2, w * d2 * d, w * d2 * d2, w * ad};
    };
    // Each component to rtol of its L1 norm, but no finer than the rounding
    // of d = l - c itself allows where l is near c: there d carries a few ulps
    // of |c|, so a moment of degree k in d is uncertain by about
    // k delta E|d|^(k-1).  Where the loss is almost constant (sigma = 0.05,
    // q >= 0.9: Var X ~ 1e-22 about c ~ log(1 - q)) rtol alone asked for more
    // digits than the integrand has, and the quadrature never converged.  For
    // the usual small q, c is tiny and so is this floor.
    const double delta_d = 8.0 * std::numeric_limits<double>::epsilon() * std::fabs(c);
    auto tol = [rtol, delta_d](const QuadratureResult<7>& q) {
      // components: w, w d, w d^2, w |d|^3, w d^3, w d^4, w |d|;  E|d|^(k-1) taken from the L1 norms
      const std::array<double, 7> floor{0.0,
                                        delta_d * q.l1[0],
                                        2.0 * delta_d * q.l1[6],
                                        3.0 * delta_d * q.l1[2],
                                        3.0 * delta_d * q.l1[2],
                                        4.0 * delta_d * q.l1[3],
                                        delta_d * q.l1[0]};
      Vec<7> t;
      for (std::size_t j = 0; j < 7; ++j) t[j] = std::max(rtol * q.l1[j], floor[j]);
      return t;
    };
    const auto r = integrate_to<7>(f, cuts, tol, 4000);
    if (!r.converged || !(r.value[0] > 0.0) || !std::isfinite(r.value[0]))
      throw detail::Declining<std::runtime_error>("moment quadrature did not converge for " + m.describe() + " at s = " + detail::fmt(s));
    std::array<double, 7> mom{};
    for (int j = 0; j < 7; ++j) mom[j] = r.value[j] / r.value[0];
    const double m1 = mom[1];  // E[l - c]
    const bool noise = std::fabs(m1) <= 8.0 * r.error[1] / r.value[0];
    if (!noise && std::fabs(m1) > 1e-9 * mom[6] && pass < 3) {
      c += m1;
      continue;
    }
    PllrCentredMoments out;
    out.mean = noise ? c : c + m1;
    out.variance = mom[2] - m1 * m1;
    out.third = mom[4] - 3.0 * m1 * mom[2] + 2.0 * m1 * m1 * m1;
    out.fourth = mom[5] - 4.0 * m1 * mom[4] + 6.0 * m1 * m1 * mom[2] - 3.0 * m1 * m1 * m1 * m1;
    // |d - m1| differs from |d| by at most |m1|: bound the absolute moments
    // about the mean from above (|m1| is below 1e-9 E|d| here: rigour, not
    // accuracy).
    const double am = std::fabs(m1);
    out.abs1 = mom[6] + am;
    out.abs3 = mom[3] + 3.0 * am * mom[2] + 3.0 * am * am * mom[6] + am * am * am;
    out.panels = r.panels;
    if (!(out.variance > 0.0) || !std::isfinite(out.variance) || !std::isfinite(out.fourth))
      throw detail::Declining<std::domain_error>("the variance of the privacy loss is not a positive finite double for " +
                              m.describe() + "; the Edgeworth bound is undefined here");
    return out;
  }
}

// ---------------------------------------------------------------------------
// The DGG bound Delta_n (i.i.d., no continuity assumption, skewed case).
// ---------------------------------------------------------------------------
namespace ewb_detail {

// Upper incomplete gamma Gamma(a, x) = int_x^inf u^(a-1) e^-u du (x >= 0).
inline double upper_gamma(double a, double x) {
  if (!(x > 0.0)) return boost::math::tgamma(a);
  if (std::isinf(x)) return 0.0;
  return boost::math::tgamma(a) * boost::math::gamma_q(a, x);
}

constexpr double kPi = 3.14159265358979323846;
constexpr double kCpsi = 1.0253;  // |Psi(t)| <= 1.0253 / (2 pi |t|)  (DGG; BoundEdgeworth Constants.R)

}  // namespace ewb_detail

// Delta_n(eps') of DGG for n i.i.d. steps, with the standardised per-step
// moments K3, K3tilde, K4 and skewness lambda3, at eps' in (0, 1/3).
// With w = 1 - 3 eps', L = |lambda3|, C = 1.0253:
//   main  = 0.1995 K3~/sqrt(n) + (0.031 K3~^2 + 0.327 K4 (1/12 + 1/(4 w^2))) / n
//   skew  = (0.054 L K3~ + 0.037 e3 L^2) / n,     e3 = exp(eps'^2/6 + eps'^2/(2 w^2))
//   P2    = 48 eps' sqrt(K4/n) + 4 eps'^2 K4/n + 96 sqrt(2 eps') L / (K4 n)^(1/4)
//           + 32 eps' L^2 / sqrt(K4 n) + 16 sqrt(2) K4^(1/4) L eps'^(3/2) / n^(3/4)
//   e2    = exp(eps'^2 (1/6 + 1/(2 w^2) + 2 P2 / (576 w^2)))
//   Rbar  = C/(2 w^2 pi) [ L/(6 n^1.5) 2^0.5 G(1.5) + K4/(24 n^2) 2^3 G(4) + L^2/(36 n^2) 2^3 G(4)
//                          + K4 L/(72 n^2.5) 2^3.5 G(4.5) + K4^2/(576 n^3) 2^4 G(5) ]
//           + C/pi e2 B [ 2^4 G(5) / (8 n^2) + L 2^3.5 G(4.5) / (12 n^1.5) ],
//           B = K4/12 + 1/(4 w^2) + P2/(576 w^2)
//   a     = min(sqrt(2 eps') (n/K4)^(1/4), 2 sqrt(n)/K3~),   b = 2 sqrt(n)/K3~
//   r1n   = 81.2376 K3~^4/(16 pi^4 n^2) + 4.3394 L K3~^3/(8 pi^3 n^2) + Rbar
//           + 1.306 (e2 - e3) L^2 / (36 n) + L (G(1.5, a) - G(1.5, b)) / sqrt(n)
//           + C 2^2.5 K3 / (3 pi sqrt(n)) (G(1.5, a^2/8) - G(1.5, b^2/8))
//   Delta_n = main + skew + r1n
// (G = Gamma function, G(a, x) = upper incomplete gamma function.)
inline double dgg_delta_n(double n, double K3, double K3tilde, double K4, double lambda3, double eps) {
  using namespace ewb_detail;
  detail::require(std::isfinite(n) && n >= 1.0, "n (number of summands) must be finite and >= 1, got " + detail::fmt(n));
  detail::require(std::isfinite(K3) && K3 > 0.0, "K3 must be finite and > 0, got " + detail::fmt(K3));
  detail::require(std::isfinite(K3tilde) && K3tilde >= K3,
                  "K3tilde must be finite and >= K3, got " + detail::fmt(K3tilde));
  detail::require(std::isfinite(K4) && K4 >= 1.0, "K4 must be finite and >= 1, got " + detail::fmt(K4));
  detail::require(std::isfinite(lambda3), "lambda3 must be finite, got " + detail::fmt(lambda3));
  detail::require(std::isfinite(eps) && eps > 0.0 && eps < 1.0 / 3.0,
                  "eps (the DGG free parameter) must be in (0, 1/3), got " + detail::fmt(eps));
  const double pi = kPi, C = kCpsi;
  const double L = std::fabs(lambda3), L2 = lambda3 * lambda3;
  const double sn = std::sqrt(n), w = 1.0 - 3.0 * eps, w2 = w * w, e2p = eps * eps;
  const double K3t = K3tilde;

  const double main_term = 0.1995 * K3t / sn + (0.031 * K3t * K3t + 0.327 * K4 * (1.0 / 12.0 + 1.0 / (4.0 * w2))) / n;
  const double e3 = std::exp(e2p / 6.0 + e2p / (2.0 * w2));
  const double skew_term = (0.054 * L * K3t + 0.037 * e3 * L2) / n;

  const double P2 = 48.0 * eps * std::sqrt(K4 / n) + 4.0 * e2p * K4 / n +
                    96.0 * std::sqrt(2.0 * eps) * L / std::pow(K4 * n, 0.25) + 32.0 * eps * L2 / std::sqrt(K4 * n) +
                    16.0 * std::sqrt(2.0) * std::pow(K4, 0.25) * L * std::pow(eps, 1.5) / std::pow(n, 0.75);
  const double e2 = std::exp(e2p * (1.0 / 6.0 + 1.0 / (2.0 * w2) + 2.0 * P2 / (576.0 * w2)));
  const double den = 2.0 * w2 * pi;
  const double g15 = boost::math::tgamma(1.5), g4 = 6.0, g45 = boost::math::tgamma(4.5), g5 = 24.0;
  const double s2 = std::sqrt(2.0);
  const double A1 = C / den * L / (6.0 * n * sn) * s2 * g15;
  const double A2 = C / den * K4 / (24.0 * n * n) * 8.0 * g4;
  const double A3 = C / den * L2 / (36.0 * n * n) * 8.0 * g4;
  const double A4 = C / den * K4 * L / (72.0 * n * n * sn) * 8.0 * s2 * g45;
  const double A5 = C / den * K4 * K4 / (576.0 * n * n * n) * 16.0 * g5;
  const double B = K4 / 12.0 + 1.0 / (4.0 * w2) + P2 / (576.0 * w2);
  const double A6 = C / pi * e2 / (8.0 * n * n) * B * 16.0 * g5;
  const double A7 = C / pi * e2 * L / (12.0 * n * sn) * B * 8.0 * s2 * g45;
  const double Rbar = A1 + A2 + A3 + A4 + A5 + A6 + A7;

  const double b = 2.0 * sn / K3t;
  const double a = std::min(std::sqrt(2.0 * eps) * std::pow(n / K4, 0.25), b);
  const double pi3 = pi * pi * pi, pi4 = pi3 * pi;
  const double r1n = (14.1961 + 67.0415) * std::pow(K3t, 4) / (16.0 * pi4 * n * n) +
                     4.3394 * L * K3t * K3t * K3t / (8.0 * pi3 * n * n) + Rbar + 1.306 * (e2 - e3) * L2 / (36.0 * n) +
                     L * (upper_gamma(1.5, a) - upper_gamma(1.5, b)) / sn +
                     C * 4.0 * s2 * K3 / (3.0 * pi * sn) * (upper_gamma(1.5, a * a / 8.0) - upper_gamma(1.5, b * b / 8.0));
  return main_term + skew_term + r1n;
}

struct DggBound {
  double value = 0.0;  // Delta_n
  double eps = 0.0;    // the DGG parameter eps' in (0, 1/3) it was evaluated at
};

// min over eps' in (0, 1/3) of Delta_n(eps'): a grid of 199 points, then a
// golden-section refinement around the best.  Every eps' gives a valid
// bound, so an imperfect minimisation only costs tightness.
inline DggBound dgg_delta_n_optimized(double n, double K3, double K3tilde, double K4, double lambda3) {
  constexpr int kGrid = 200;
  const double third = 1.0 / 3.0;
  DggBound best{std::numeric_limits<double>::infinity(), 0.0};
  int kbest = 1;
  for (int k = 1; k < kGrid; ++k) {
    const double e = third * k / kGrid, v = dgg_delta_n(n, K3, K3tilde, K4, lambda3, e);
    if (v < best.value) {
      best = {v, e};
      kbest = k;
    }
  }
  double lo = third * (kbest - 1) / kGrid, hi = third * (kbest + 1) / kGrid;
  lo = std::max(lo, 1e-6 * third);
  hi = std::min(hi, third * (1.0 - 1e-6));
  const double gr = 0.5 * (std::sqrt(5.0) - 1.0);
  double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
  double f1 = dgg_delta_n(n, K3, K3tilde, K4, lambda3, x1), f2 = dgg_delta_n(n, K3, K3tilde, K4, lambda3, x2);
  for (int i = 0; i < 60; ++i) {
    if (f1 <= f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - gr * (hi - lo);
      f1 = dgg_delta_n(n, K3, K3tilde, K4, lambda3, x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + gr * (hi - lo);
      f2 = dgg_delta_n(n, K3, K3tilde, K4, lambda3, x2);
    }
  }
  if (f1 < best.value) best = {f1, x1};
  if (f2 < best.value) best = {f2, x2};
  return best;
}

// Delta for the sum of n i.i.d. steps with the given per-step moments, with
// the standardised moments inflated by a relative 1e-9 (Delta_n is increasing
// in each) and 1e-10 added to the result, which covers the effect of the
// cumulants' quadrature error (relative ~1e-13) on the expansion F^ itself.
inline DggBound dgg_delta_for_steps(const PllrCentredMoments& m, double n) {
  constexpr double kInflate = 1.0 + 1e-9, kSlack = 1e-10;
  const double K3 = m.K3() * kInflate;
  const double K3t = std::max(m.K3tilde() * kInflate, K3);
  const double K4 = std::max(m.K4() * kInflate, 1.0);  // K4 >= 1 (Jensen); guards rounding only
  DggBound b = dgg_delta_n_optimized(n, K3, K3t, K4, std::fabs(m.lambda3()) * kInflate);
  b.value += kSlack;
  return b;
}

// ---------------------------------------------------------------------------
// delta and eps bounds for one ordering.
// ---------------------------------------------------------------------------
struct EdgeworthBoundInputs {
  std::array<double, 6> kx{}, ky{};  // kappa_1..kappa_3 of the summed X and Y (rest unused)
  double delta_x = 0.0, delta_y = 0.0;
};

inline double edgeworth_delta_upper(const EdgeworthBoundInputs& in, double eps) {
  const double sf_y = edgeworth_scaled_sf(eps, in.ky, 1);
  const double sf_x = edgeworth_scaled_sf(eps, in.kx, 1);
  const double x_part = sf_x - in.delta_x;
  return std::min(1.0, sf_y + in.delta_y) - (x_part > 0.0 ? std::exp(eps) * x_part : 0.0);
}

inline double edgeworth_delta_lower(const EdgeworthBoundInputs& in, double eps) {
  const double sf_y = edgeworth_scaled_sf(eps, in.ky, 1);
  const double sf_x = edgeworth_scaled_sf(eps, in.kx, 1);
  return std::max(0.0, sf_y - in.delta_y) - std::exp(eps) * std::min(1.0, sf_x + in.delta_x);
}

struct EdgeworthBoundOrdering {
  Ordering ordering = Ordering::Remove;
  double eps_lower = 0.0, eps_upper = std::numeric_limits<double>::infinity();
  bool vacuous_lower = true, vacuous_upper = true;
  double delta_x = 0.0, delta_y = 0.0;          // Delta for the summed X and Y
  double dgg_eps_x = 0.0, dgg_eps_y = 0.0;      // DGG eps' used for each
};

namespace ewb_detail {

constexpr int kEpsGrid = 4000;
constexpr double kEpsScanMax = 1e3;  // the eps range searched, as kEpsMax in inversion.hpp
constexpr double kZmax = 40.0;  // beyond this z both expansions are ~e^-800: nothing changes

template <class F>
std::pair<double, double> refine(const F& g, double lo, double hi, double glo, double ghi) {
  auto tol = [](double u, double v) { return std::fabs(v - u) <= 1e-12 * (1.0 + std::fabs(u)); };
  return detail::narrow_bracket(g, detail::Bracket{lo, hi, glo, ghi}, tol, 200);
}

inline double eps_scan_end(const EdgeworthBoundInputs& in) {
  const double ex = in.kx[1] + kZmax * std::sqrt(in.kx[2]);
  const double ey = in.ky[1] + kZmax * std::sqrt(in.ky[2]);
  return std::min(std::max({ex, ey, 1.0}), kEpsScanMax);
}

}  // namespace ewb_detail

inline EdgeworthBoundOrdering edgeworth_bound_one(const EdgeworthBoundInputs& in, double delta, Ordering o) {
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  EdgeworthBoundOrdering out;
  out.ordering = o;
  out.delta_x = in.delta_x;
  out.delta_y = in.delta_y;
  const double end = ewb_detail::eps_scan_end(in);
  const double h = end / ewb_detail::kEpsGrid;

  // Upper: first eps with delta_upper(eps) <= delta.
  {
    auto g = [&](double e) { return edgeworth_delta_upper(in, e) - delta; };
    double prev = 0.0, gprev = g(0.0);
    bool found = false;
    if (gprev <= 0.0) {
      out.eps_upper = 0.0;
      found = true;
    }
    for (int j = 1; !found && j <= ewb_detail::kEpsGrid; ++j) {
      const double e = j * h, ge = g(e);
      if (ge <= 0.0) {
        const auto br = ewb_detail::refine(g, prev, e, gprev, ge);
        // the safe end: delta_upper <= delta there
        out.eps_upper = g(br.second) <= 0.0 ? br.second : e;
        found = true;
      }
      prev = e;
      gprev = ge;
    }
    if (found) {
      out.vacuous_upper = false;
    } else {
      out.eps_upper = std::numeric_limits<double>::infinity();
      out.vacuous_upper = true;
    }
  }

  // Lower: last eps (on the grid, then refined) with delta_lower(eps) > delta.
  // For eps > log(1/Delta_X) the subtracted term exceeds 1: nothing to scan there.
  {
    auto g = [&](double e) { return edgeworth_delta_lower(in, e) - delta; };
    const double end_lo = in.delta_x > 0.0 ? std::min(end, -std::log(in.delta_x) + 1.0) : end;
    const double hl = std::max(end_lo, 0.0) / ewb_detail::kEpsGrid;
    int last = -1;
    double glast = 0.0;
    for (int j = 0; j <= ewb_detail::kEpsGrid; ++j) {
      const double ge = g(j * hl);
      if (ge > 0.0) {
        last = j;
        glast = ge;
      }
    }
    if (last < 0) {
      out.eps_lower = 0.0;
      out.vacuous_lower = true;
    } else {
      double e = last * hl;
      if (last < ewb_detail::kEpsGrid) {
        const double e2 = (last + 1) * hl, g2 = g(e2);
        if (g2 <= 0.0) {
          const auto br = ewb_detail::refine(g, e, e2, glast, g2);
          if (g(br.first) > 0.0) e = br.first;
        }
      }
      out.eps_lower = e;
      out.vacuous_lower = false;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Both orderings for n i.i.d. steps of one mechanism.
// ---------------------------------------------------------------------------
struct EdgeworthBoundResult {
  PllrCentredMoments x, y;                    // per-step moments, remove ordering
  std::array<EdgeworthBoundOrdering, 2> orderings;  // indexed by Ordering
  double steps = 0.0, delta = 0.0;
  // Over both orderings (add/remove neighbours need the max of the two eps):
  double eps_lower = 0.0, eps_upper = 0.0;
  bool vacuous_lower = true, vacuous_upper = true;
  Ordering ordering = Ordering::Remove;       // the ordering giving eps_upper
};

inline EdgeworthBoundInputs edgeworth_bound_inputs(const PllrCentredMoments& x, const PllrCentredMoments& y,
                                                   double steps) {
  EdgeworthBoundInputs in;
  in.kx = {0.0, steps * x.mean, steps * x.variance, steps * x.third, 0.0, 0.0};
  in.ky = {0.0, steps * y.mean, steps * y.variance, steps * y.third, 0.0, 0.0};
  return in;
}

inline EdgeworthBoundResult edgeworth_bound(const Mechanism& m, double steps, double delta) {
  detail::require(std::isfinite(steps) && steps >= 1.0 && std::floor(steps) == steps && steps <= kStepsMax,
                  "steps must be an integer in [1, 2^53 = " + detail::fmt(kStepsMax) + "], got " + detail::fmt(steps));
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  EdgeworthBoundResult res;
  res.steps = steps;
  res.delta = delta;
  res.x = pllr_centred_moments(m, 0.0);
  res.y = pllr_centred_moments(m, 1.0);
  const DggBound dx = dgg_delta_for_steps(res.x, steps), dy = dgg_delta_for_steps(res.y, steps);
  for (Ordering o : {Ordering::Remove, Ordering::Add}) {
    // add ordering: X' = -Y, Y' = -X (Delta depends on |lambda3| only, so it swaps)
    const bool rm = o == Ordering::Remove;
    EdgeworthBoundInputs in = rm ? edgeworth_bound_inputs(res.x, res.y, steps)
                                 : edgeworth_bound_inputs(res.y.negated(), res.x.negated(), steps);
    in.delta_x = rm ? dx.value : dy.value;
    in.delta_y = rm ? dy.value : dx.value;
    EdgeworthBoundOrdering b = edgeworth_bound_one(in, delta, o);
    b.dgg_eps_x = rm ? dx.eps : dy.eps;
    b.dgg_eps_y = rm ? dy.eps : dx.eps;
    res.orderings[static_cast<int>(o)] = b;
  }
  const auto& r = res.orderings[0];
  const auto& a = res.orderings[1];
  // lower bound on max(eps_remove, eps_add): the larger informative lower bound
  res.eps_lower = std::max(r.eps_lower, a.eps_lower);
  res.vacuous_lower = r.vacuous_lower && a.vacuous_lower;
  // upper bound on max(eps_remove, eps_add): both must be bounded
  res.ordering = a.eps_upper > r.eps_upper ? Ordering::Add : Ordering::Remove;
  res.eps_upper = std::max(r.eps_upper, a.eps_upper);
  res.vacuous_upper = r.vacuous_upper || a.vacuous_upper;
  return res;
}

inline EdgeworthBoundResult dpsgd_edgeworth_bound(double sigma, double q, double steps, double delta) {
  const SubsampledGaussian m(sigma, q);  // validates sigma and q
  return edgeworth_bound(m, steps, delta);
}

}  // namespace edgeworth
