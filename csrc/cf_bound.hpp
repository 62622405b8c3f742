// Certified bounds on delta(eps) by inverting the characteristic function of
// the privacy loss on a tilted line.  The argument, constants and margins are
// written out in docs/certified.md ("The characteristic-function bound"),
// whose numbering this file follows.
//
// (4) Exact representation.  For the loss S (Y-loss of the ordering) with
//     CGF G and any tilt c > 0,
//         delta(eps) = e^(G(c) - c eps) R(0),   R(y) = E_c[h(S - eps + y)],
//         h(v) = e^(-c v) (1 - e^(-v))_+ >= 0,
//     E_c the law of S tilted by e^(c S).  R has Fourier transform
//     F(u) = hh(u) Psi(u) e^(-i u eps), hh(u) = 1 / ((c + i u)(c + 1 + i u)),
//     Psi(u) = E_c[e^(i u S)] = e^(i u M) prod_j phi_j(u)^(n_j).
// (5) Poisson summation.  With step du and period P = 2 pi / du,
//         (du / 2 pi) sum_{k in Z} F(k du) = sum_{m in Z} R(m P) >= R(0),
//     since R >= 0: the trapezoid sum is an upper bound on R(0), with no
//     discretisation error to estimate.  The aliases m != 0 (Chernoff) give
//     the lower bound.
// Truncation.  The terms k > K are bounded through |phi_j(u)| <= beta_j(u):
//     (i)   Taylor with remainder (m = 3, 4, 6), whole law and splits;
//     (ii)  |phi(u)|^2 <= 1 - (4 u^2 / pi^2) m_I^2 V_I, |I| <= pi / u;
//     (iii) density floor: 1 - f0 (L - min(L, 2 / u));
//     (iv)  TV / u, TV exact from the extrema of the loss density;
//     (v)   second order: m_below + f(v_s) / u + (|f'(v_s)| + ||f''||_1) / u^2.
// Numerical error.  phi_j(k du) are Gauss-Kronrod sums over fixed panels;
//     10 |Kronrod - Gauss| bounds their error; G(c) carries bounds.hpp's margin.
//
// The mechanisms with P = N(0, 1) and an increasing loss are supported (the
// subsampled Gaussian with its TV in closed form, Gaussian mixtures such as
// ELS's with TV by quadrature); others (the subsampled Laplace mechanism),
// and laws the bounds cannot control within kCfMaxTerms terms and kCfMaxWork
// work (few sampled steps in all), decline.  There two retries follow (docs/certified.md, "Few
// sampled steps"): the split bound (R = R_A + R_B by a cut into a flat part
// and the rest; CfInversion::build_split) and the truncated bound (the plain
// inversion of the steps restricted below a cut, TruncatedPllr, plus the
// union bound on the rest).  Where all decline, std::nullopt, and the caller
// keeps its other bounds.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <optional>
#include <utility>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include <boost/math/quadrature/gauss.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <boost/math/quadrature/gauss_kronrod.hpp>

#include "bounds.hpp"
#include "cgf.hpp"
#include "quadrature.hpp"
#include "roots.hpp"

namespace edgeworth {

namespace detail {
// The upper tail of N(0, 1) at z, and of the mixture sum_j w_j N(m_j, 1) at x.
inline double normal_upper_tail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }
inline double mixture_upper_tail(const std::vector<double>& weights, const std::vector<double>& means, double x) {
  double t = 0.0;
  for (std::size_t j = 0; j < weights.size(); ++j) t += weights[j] * normal_upper_tail(x - means[j]);
  return t;
}
}  // namespace detail

// A Gaussian-reference mechanism restricted to x <= x_m: the sub-probability
// measures p(x) 1{x <= x_m} (and q likewise) of the truncated bound
// (docs/certified.md, "Few sampled steps").  Its "CGF" is
// log int_{x <= x_m} p e^(s l); K(0) = K(1) = 0 no longer hold, so the
// identity shortcuts are refused.
class TruncatedPllr final : public GaussianReferencePllr {
 public:
  TruncatedPllr(std::shared_ptr<const Mechanism> owner, const GaussianReferencePllr& base, double x_m)
      : owner_(std::move(owner)), base_(base), x_m_(x_m) {
    // P(x > x_m) and Q(x > x_m) from Q's mixture form (truncated_composition
    // builds this law only over mechanisms that have one)
    if (const auto form = owner_->as_gaussian_mixture())
      masses_out_ = std::make_pair(detail::normal_upper_tail(x_m_), detail::mixture_upper_tail(form->weights, form->means, x_m_));
  }
  double log_p(double x) const override {
    return x <= x_m_ ? base_.log_p(x) : -std::numeric_limits<double>::infinity();
  }
  double pllr(double x) const override { return base_.pllr(x); }
  std::vector<double> breakpoints(double s) const override {
    std::vector<double> b;
    for (double x : base_.breakpoints(s))
      if (x < x_m_) b.push_back(x);
    b.push_back(x_m_);
    return b;
  }
  bool closed_form(double s, int /*order*/, TiltedCumulants* /*out*/) const override {
    if (s == 0.0 || s == 1.0) throw std::runtime_error("the truncated law has no CGF identity at s = 0, 1");
    return false;
  }
  double pllr_infimum() const override { return base_.pllr_infimum(); }
  bool probability_pair() const override { return false; }
  std::string describe() const override { return base_.describe() + " restricted to x <= " + detail::fmt(x_m_); }
  PllrSlopes pllr_slopes(double x) const override { return base_.pllr_slopes(x); }
  double pllr_inverse(double v) const override { return base_.pllr_inverse(v); }
  bool pllr_increasing() const override { return base_.pllr_increasing(); }
  std::optional<double> support_cut() const override { return x_m_; }
  std::optional<std::pair<double, double>> masses_left_out() const override { return masses_out_; }
  double x_m() const { return x_m_; }

 private:
  std::shared_ptr<const Mechanism> owner_;
  const GaussianReferencePllr& base_;
  double x_m_;
  std::optional<std::pair<double, double>> masses_out_;
};

namespace detail {

constexpr double kCfPi = 3.14159265358979323846;
constexpr double kCfPanelPhase = 2.0;   // max u_max |l(b) - l(a)| of a 15-point panel
constexpr double kCfPanelPhaseWide = 8.0;  // max u_max |l(b) - l(a)| of a 31-point panel
constexpr double kCfPanelWidth = 1.0;   // max b - a per panel (the tilted law has unit scale in x)
constexpr int kCfMaxPanels = 4096;
constexpr double kCfCoarseMass = 1e-18;  // relative to the peak of the tilted density
constexpr int kCfMaxTerms = 4096;
// terms x nodes (complex multiply-adds; about 100 ms at the cap).  6e7 until
// it was seen to cost most in the regime of one to three epochs at sigma ~0.6,
// where the inversions need 0.6e8 to 1.2e8 (sigma 0.637, q 6.1e-3, 199 steps,
// delta 1e-8: 5.82 by the Chernoff bound, 4.947 with the split bound at 1.16e8;
// pessimistic PLD 4.949).
constexpr double kCfMaxWork = 1.2e8;
constexpr double kCfTailRtol = 1e-6;    // truncation + quadrature allowance, relative to the sum
// The truncated bound's last resort (detail::build_truncated): where every
// tilt declines at kCfTailRtol, a 100 times larger allowance, which needs about
// a fifth of the terms with two steps (the tail falls like K^-3 there) and a
// twentieth of the work, at 1e-4 of the bound.
constexpr double kCfLooseTailRtol = 1e-4;
// The plain inversion answers alone only where it resolves its own answer:
// its certified lower bound there within this of its upper bound, so that no
// other valid bound could be below it by more.  Where it does not (a tilted
// law with several modes, few sampled steps in all: the sum at the tilt is
// below its truncation allowance, the upper bound is that allowance and
// crosses delta at several eps), the split and truncated retries are tried
// too and the smallest kept: sigma 2.17 and 2.1725, q 6.41e-4, 1335 steps,
// delta 1.8e-15 gave 0.1372 and 0.1305 (lower bound 0 at both), the
// truncated bound gives 0.08426 and 0.08415 (PLD pessimistic at 2e-5:
// 0.101 and 0.0840).
constexpr double kCfResolvedRtol = 1e-4;
constexpr double kCfErrorFactor = 10.0; // safety factor on the Gauss-Kronrod error estimates
constexpr double kCfMomentRtol = 1e-6;  // margin on the moments and TV used by the tail bounds
// A node sum of at least kCfPartWork terms x nodes (about 1 ms) is cut into
// kCfParts ranges that run on up to as many threads (TiltedStep::node_sums).
constexpr int kCfParts = 4;
constexpr double kCfPartWork = 2e6;

// One node of the trapezoid sum, over the quadrature nodes i: optionally
// advance E_i <- (1 + E1_i) E_i + E1_i (E = e^(i u d) - 1 from u - du to u),
// then sums = (sum w E_r, sum w E_i, sum dw E_r, sum dw E_i).  The hot loop
// of the bound: SIMD with the sums reassociated (which moves them in the
// last bits only), and compiled for AVX2 as well as the baseline where the
// compiler can dispatch on the CPU at load time.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__GLIBC__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
inline void cf_sweep(std::size_t n, bool advance, const double* qr, const double* qi, double* pr, double* pi,
                     const double* pw, const double* pdw, double* sums) {
  double sr = 0.0, si = 0.0, dr = 0.0, di = 0.0;
#pragma omp simd reduction(+ : sr, si, dr, di)
  for (std::size_t i = 0; i < n; ++i) {
    double xr = pr[i], xi = pi[i];
    if (advance) {
      const double zr = 1.0 + qr[i], zi = qi[i];
      const double nr = zr * xr - zi * xi + qr[i];
      const double ni = zr * xi + zi * xr + qi[i];
      xr = nr;
      xi = ni;
      pr[i] = xr;
      pi[i] = xi;
    }
    sr += pw[i] * xr;
    si += pw[i] * xi;
    dr += pdw[i] * xr;
    di += pdw[i] * xi;
  }
  sums[0] = sr;
  sums[1] = si;
  sums[2] = dr;
  sums[3] = di;
}

// Central moments (k = 2..6) of a (sub-)probability law, normalised to its
// own mass, and their absolute counterparts E|X - mean|^k.
struct LawMoments {
  double mass = 0.0;
  std::array<double, 7> mom{}, abs{};
};

// Bound (i) on |E e^(i u (X - mean))| of a normalised law: the Taylor
// polynomial of order m - 1 plus the remainder E|X|^m u^m / m!, m = 3, 4, 6,
// each moment widened by `rtol` of its absolute counterpart.  The smallest;
// may exceed 1.
inline double moment_bound(const LawMoments& lm, double u, double rtol) {
  const auto& mom = lm.mom;
  const auto& ab = lm.abs;
  auto widen = [&](int k) { return rtol * ab[k]; };
  const double u2 = u * u, u3 = u2 * u, u4 = u2 * u2, u5 = u4 * u, u6 = u3 * u3;
  const double slack2 = widen(2) * u2 / 2.0, slack3 = widen(3) * u3 / 6.0, slack4 = widen(4) * u4 / 24.0,
               slack5 = widen(5) * u5 / 120.0;
  const double re2 = 1.0 - mom[2] * u2 / 2.0, im3 = mom[3] * u3 / 6.0;
  const double b3 = std::fabs(re2) + slack2 + (ab[3] + widen(3)) * u3 / 6.0;
  const double b4 = std::hypot(re2, im3) + slack2 + slack3 + (ab[4] + widen(4)) * u4 / 24.0;
  const double b6 = std::hypot(re2 + mom[4] * u4 / 24.0, -im3 + mom[5] * u5 / 120.0) + slack2 + slack3 + slack4 +
                    slack5 + (ab[6] + widen(6)) * u6 / 720.0;
  return std::min({b3, b4, b6});
}

// Moments of the nodes [first, last) with weights w and values l.
inline LawMoments node_moments(const std::vector<double>& w, const std::vector<double>& l, std::size_t first,
                               std::size_t last) {
  LawMoments lm;
  double mean = 0.0;
  for (std::size_t i = first; i < last; ++i) {
    lm.mass += w[i];
    mean += w[i] * l[i];
  }
  if (!(lm.mass > 0.0)) return lm;
  mean /= lm.mass;
  for (std::size_t i = first; i < last; ++i) {
    const double d = l[i] - mean;
    double p = w[i] / lm.mass;
    for (int k = 1; k <= 6; ++k) {
      p *= d;
      lm.mom[k] += p;
      lm.abs[k] += std::fabs(p);
    }
  }
  return lm;
}

// One segment's step under the tilt: x ~ p(x) e^(b l(x)) / e^K(b), loss sign * l(x).
// The constructor computes what the tail bounds need (moments, TV, mode) on
// panels of width <= kCfPanelWidth; prepare(u_max) lays the nodes that
// resolve e^(i u l) up to u_max.
class TiltedStep {
 public:
  // split_x (finite): the cut of the split bound (docs/certified.md, "Few
  // sampled steps"): the law's part below split_x (F) and above (J) are
  // summed apart, and the bounds on each part's CF are prepared.
  TiltedStep(const GaussianReferencePllr& m, double count, double b, double sign,
             double split_x = std::numeric_limits<double>::quiet_NaN())
      : m_(m), count_(count), b_(b), sign_(sign) {
    const TiltedRange range = tilted_range(m, b);
    shift_ = range.shift;
    cuts_ = range.cuts;
    std::sort(cuts_.begin(), cuts_.end());
    cuts_.erase(std::unique(cuts_.begin(), cuts_.end()), cuts_.end());
    if (std::isfinite(split_x)) {
      if (!(split_x > cuts_.front() && split_x < cuts_.back())) {
        ok_ = false;
        return;
      }
      split_x_ = split_x;
      cuts_.push_back(split_x);
      std::sort(cuts_.begin(), cuts_.end());
      cuts_.erase(std::unique(cuts_.begin(), cuts_.end()), cuts_.end());
    }
    if (!lay_nodes(0.0)) return;
    // The whole law, and splits of it by x into a lower part A and an upper
    // part B (nodes are in increasing x): |phi| <= m_A beta_A + m_B beta_B.
    // With rare large losses (a tilted law with a far second mode) the whole
    // law's moments are useless while the lower part's decay well.
    std::vector<double> l(d_.size());
    for (std::size_t i = 0; i < d_.size(); ++i) l[i] = d_[i] + mean_;
    whole_ = node_moments(w_, l, 0, l.size());
    ok_ = whole_.mom[2] > 0.0 && std::isfinite(whole_.mom[2]) && std::isfinite(whole_.abs[6]);
    if (!ok_) return;
    // split at panel boundaries, where the upper part's mass first exceeds each level
    std::vector<double> upper_mass(panel_start_.size() + 1, 0.0);
    for (std::size_t p = panel_start_.size(); p-- > 0;) {
      const std::size_t end = p + 1 < panel_start_.size() ? panel_start_[p + 1] : l.size();
      double m = 0.0;
      for (std::size_t i = panel_start_[p]; i < end; ++i) m += w_[i];
      upper_mass[p] = upper_mass[p + 1] + m;
    }
    std::size_t last = 0;
    for (double level : {1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-9, 1e-12}) {
      std::size_t p = panel_start_.size();
      while (p > 1 && upper_mass[p - 1] <= level) --p;
      if (p >= panel_start_.size() || p == 0 || panel_start_[p] == last) continue;
      last = panel_start_[p];
      splits_.push_back({node_moments(w_, l, 0, last), node_moments(w_, l, last, l.size())});
    }
    if (std::isfinite(split_x_)) {
      part_f_ = node_moments(w_, l, 0, split_node_);
      part_j_ = node_moments(w_, l, split_node_, l.size());
      double df = 0.0, dj = 0.0;
      for (std::size_t i = 0; i < l.size(); ++i) (i < split_node_ ? df : dj) += dw_[i];
      f_mass_err_ = kCfErrorFactor * std::fabs(df);
      j_mass_err_ = kCfErrorFactor * std::fabs(dj);
      if (!(part_f_.mass > 0.0) || !(part_j_.mass > 0.0)) {
        ok_ = false;
        return;
      }
    }
    density_extrema();
    if (ok_) second_order_edges();
    if (std::isfinite(split_x_) && !has_split_edge_) ok_ = false;
  }

  // The nodes for u <= u_max (false where too many panels would be needed).
  bool prepare(double u_max) {
    if (!ok_) return false;
    // The base layout already resolves the phase where every panel's loss
    // span is within kCfPanelPhase / u_max: then the nodes would be the same.
    bool resolved = true;
    for (const auto& [lo, hi] : panel_l_)
      if (u_max * std::fabs(hi - lo) > kCfPanelPhase) resolved = false;
    if (resolved && !has_coarse_) return true;
    return ok_ = lay_nodes(u_max);
  }

  // About how many nodes prepare(u_max) will lay (from the base panels).
  double estimate_nodes(double u_max) const {
    double n = 0.0;
    for (std::size_t p = 0; p < panel_edge_.size(); ++p) {
      const double right = p + 1 < panel_edge_.size() ? panel_edge_[p + 1] : cuts_.back();
      const double phase = u_max * std::fabs(m_.pllr(right) - m_.pllr(panel_edge_[p]));
      n += phase <= kCfPanelPhase ? 15.0 : 31.0 * std::max(1.0, phase / kCfPanelPhaseWide);
    }
    return n;
  }

  bool ok() const { return ok_; }
  double count() const { return count_; }
  double sign() const { return sign_; }
  double mean() const { return mean_; }  // of l (unsigned), over the nodes
  double variance() const { return whole_.mom[2]; }
  double tv() const { return tv_; }
  std::size_t nodes() const { return d_.size(); }
  struct Edge {
    double mass_below, mass_above, f, fp, f2_above, f2_below;
  };

  // log phi(u_k) (centred, signed: conjugated for sign < 0) and the error
  // bound on |phi(u_k)| for u_k = k du, k = 1..K.
  void log_cf(double du, int K, std::vector<std::complex<double>>& logphi, std::vector<double>& err) const {
    const auto nk = static_cast<std::size_t>(K) + 1;
    logphi.assign(nk, 0.0);
    err.assign(nk, 0.0);
    std::vector<std::array<double, 4>> acc;
    node_sums(du, K, 0, d_.size(), acc);
    for (int k = 1; k <= K; ++k) {
      const auto& a = acc[static_cast<std::size_t>(k)];
      const std::complex<double> phi_minus_1(a[0], sign_ * a[1]);
      logphi[static_cast<std::size_t>(k)] = complex_log1p(phi_minus_1);
      err[static_cast<std::size_t>(k)] = kCfErrorFactor * std::hypot(a[2], a[3]) + coarse_error_ + rounding(du, k);
    }
  }

  // The split: the part below the cut (F, upper == false) or above it (J):
  // phi_part(u_k) (centred on the whole law's mean, signed) and the error
  // bound on it, for k = 0..K (k = 0: the part's mass).
  void part_cf(double du, int K, bool upper, std::vector<std::complex<double>>& phi, std::vector<double>& err) const {
    const auto nk = static_cast<std::size_t>(K) + 1;
    const std::size_t first = upper ? split_node_ : 0, last = upper ? d_.size() : split_node_;
    double mass = 0.0, dmass = 0.0;
    for (std::size_t i = first; i < last; ++i) {
      mass += w_[i];
      dmass += dw_[i];
    }
    phi.assign(nk, 0.0);
    err.assign(nk, 0.0);
    std::vector<std::array<double, 4>> acc;
    node_sums(du, K, first, last, acc);
    const double eps = std::numeric_limits<double>::epsilon();
    phi[0] = mass;
    err[0] = kCfErrorFactor * std::fabs(dmass) + coarse_error_ + 64.0 * eps;
    for (int k = 1; k <= K; ++k) {
      const auto& a = acc[static_cast<std::size_t>(k)];
      // sum w (e^(i u d) - 1) = phi_part - mass; likewise for the Kronrod-Gauss differences
      phi[static_cast<std::size_t>(k)] = std::complex<double>(mass + a[0], sign_ * a[1]);
      err[static_cast<std::size_t>(k)] =
          kCfErrorFactor * std::hypot(a[2] + dmass, a[3]) + coarse_error_ + rounding(du, k) + 64.0 * eps;
    }
  }

  bool split() const { return std::isfinite(split_x_); }
  double split_x() const { return split_x_; }
  // Upper bounds on the masses of the parts (from the nodes of the base
  // layout, widened by kCfMomentRtol, plus the Kronrod-Gauss difference).
  double f_mass_upper() const { return part_f_.mass * (1.0 + kCfMomentRtol) + f_mass_err_ + coarse_error_; }
  double j_mass_upper() const { return part_j_.mass * (1.0 + kCfMomentRtol) + j_mass_err_ + coarse_error_; }
  double j_mass() const { return part_j_.mass; }

  // a(u) >= |phi_F(u)|: the mass, or the mass times the Taylor bound (i) of
  // the normalised part.
  double flat_bound(double u) const {
    const double m = f_mass_upper();
    return std::min(m, m * detail::moment_bound(part_f_, u, kCfMomentRtol) + coarse_error_);
  }

  // b(u) >= |phi_J(u)|: the mass, the Taylor bound (i) of the normalised
  // part, or (v) at the cut with nothing below: integrating by parts twice
  // on v >= l(x_m), |phi_J(u)| <= f(l_m) / u + (|f'(l_m)| + ||f''||_1 above) / u^2.
  double jump_bound(double u) const {
    const double m = j_mass_upper();
    return std::min({m, m * detail::moment_bound(part_j_, u, kCfMomentRtol) + coarse_error_, jump_second_order(u)});
  }
  double jump_second_order(double u) const {
    return split_edge_.f / u + (split_edge_.fp + split_edge_.f2_above) / (u * u) + coarse_error_;
  }
  // C with jump_second_order(u) <= C / u for u >= u0 (coarse_error_ = 0: the base layout)
  double jump_decay(double u0) const { return split_edge_.f + (split_edge_.fp + split_edge_.f2_above) / u0; }

 private:
  static constexpr int kReseed = 256;

  // The sums over the nodes [first, last): acc[k] = (sum w E_r, sum w E_i,
  // sum dw E_r, sum dw E_i) with E = e^(i u_k d) - 1, k = 1..K.
  // A large sum (K times the nodes at least kCfPartWork) is cut into
  // kCfParts fixed ranges of whole chunks, each summed on its own and added
  // in range order; the ranges run on up to kCfParts threads.  The cut does
  // not depend on the threads (a thread that cannot start leaves its ranges
  // to the caller), so the result is the same bits on any machine.
  void node_sums(double du, int K, std::size_t first, std::size_t last,
                 std::vector<std::array<double, 4>>& acc) const {
    const auto nk = static_cast<std::size_t>(K) + 1;
    const std::size_t chunks = (last - first + kChunk - 1) / kChunk;
    const bool cut = static_cast<double>(K) * static_cast<double>(last - first) >= kCfPartWork &&
                     chunks >= static_cast<std::size_t>(kCfParts);
    if (!cut) {
      acc.assign(nk, {0.0, 0.0, 0.0, 0.0});
      chunk_sums(du, K, first, last, acc);
      return;
    }
    std::array<std::vector<std::array<double, 4>>, kCfParts> part;
    std::array<std::size_t, kCfParts + 1> edge{};
    for (int p = 0; p <= kCfParts; ++p)
      edge[static_cast<std::size_t>(p)] = std::min(last, first + kChunk * (chunks * static_cast<std::size_t>(p) / kCfParts));
    for (auto& a : part) a.assign(nk, {0.0, 0.0, 0.0, 0.0});
    auto run = [&](int p) {
      chunk_sums(du, K, edge[static_cast<std::size_t>(p)], edge[static_cast<std::size_t>(p) + 1],
                 part[static_cast<std::size_t>(p)]);
    };
    const unsigned hw = std::thread::hardware_concurrency();
    const int workers = static_cast<int>(std::min<unsigned>(hw == 0 ? 1u : hw, kCfParts));
    std::vector<std::thread> pool;
    pool.reserve(kCfParts);  // (no reallocation once a thread runs)
    std::vector<char> taken(kCfParts, 0);
    for (int t = 1; t < workers; ++t) {
      try {
        pool.emplace_back([&, t] {
          for (int p = t; p < kCfParts; p += workers) run(p);
        });
        for (int p = t; p < kCfParts; p += workers) taken[static_cast<std::size_t>(p)] = 1;
      } catch (const std::system_error&) {  // no thread could be started
        break;  // (the caller sums what no thread took: the same sums, on this thread)
      } catch (const std::bad_alloc&) {  // the thread state's allocation
        break;
      }
    }
    for (int p = 0; p < kCfParts; ++p)
      if (!taken[static_cast<std::size_t>(p)]) run(p);
    for (auto& th : pool) th.join();
    acc = std::move(part[0]);
    for (int p = 1; p < kCfParts; ++p)
      for (std::size_t k = 0; k < nk; ++k)
        for (int j = 0; j < 4; ++j) acc[k][static_cast<std::size_t>(j)] += part[static_cast<std::size_t>(p)][k][static_cast<std::size_t>(j)];
  }

  static constexpr std::size_t kChunk = 256;

  // The rounding charged to phi(u_k) (chunk_sums): the recurrence drifts by
  // at most ~12 eps per step since its last seed (j of them, j <= kReseed;
  // the seeds carry their phase's rounding, so they are right to a few ulp),
  // and the weights sum to 1: 16 j eps.  (It was 16 kReseed eps at every k:
  // with thousands of steps that charge, n times it in Psi, decided the bound
  // deep in the tail; docs/certified.md, "Numerical error".)
  // Every rounding above is relative to the magnitudes it acts on: the seed's
  // to |E_1|, each step's to |E_m| + |E_1| + |E_m E_1|, each addition of the
  // node sum to the terms w |E|, and |E_m| <= min(2, m u_1 |d|).  Where the
  // phases are small (a law whose loss barely moves, as a step of a subsampled
  // Gaussian at q ~ 1e-9 is: |phi - 1| ~ 1e-12 where 16 eps is 3.6e-15, and
  // 2.4e11 steps turn that into a relative 1e-3 in Psi), the charge is scaled
  // by min(2, (k + 1) du E|d|) / 2 (E|d| = abs_dev_, concave in |d|), with
  // n eps for the node sum's additions in any order (n the nodes); where that
  // is more than 16 j eps, 16 j eps stands as before.  (sigma 0.5498, q
  // 1.083e-9, 2.437e11 steps, delta 9.88e-9: the truncated bound declined on
  // the charge alone and eps fell from 1.3653 (Chernoff) to 0.01140 at sigma
  // 0.54985; noise_multiplier then fell with q.)
  double rounding(double du, int k) const {
    const int j = (k - 1) % kReseed + 1;
    const double eps = std::numeric_limits<double>::epsilon();
    const double scale = std::min(2.0, (k + 1.0) * du * abs_dev_);
    return std::min(16.0 * j * eps, (16.0 * j + static_cast<double>(d_.size())) * eps * 0.5 * scale);
  }

  // node_sums over [first, last) in chunks of kChunk nodes, added into acc.
  void chunk_sums(double du, int K, std::size_t first, std::size_t last,
                  std::vector<std::array<double, 4>>& acc) const {
    const std::size_t n = last;
    // The sums over the nodes, accumulated chunk by chunk so that a chunk's
    // recurrence stays in the L1 cache for all K nodes of the sum.
    // Each step of the recurrence adds at most ~4 ulp to |E| <= 2 per node,
    // and the seed E_1's own rounding (~2 ulp) propagates linearly, so over
    // kReseed steps a term drifts by at most ~12 kReseed eps; with the
    // weights summing to 1, 16 kReseed eps is charged to err (the
    // worst drift seen over 2e5 random phases was 366 eps).
    double e1r[kChunk], e1i[kChunk], er[kChunk], ei[kChunk];
    for (std::size_t i0 = first; i0 < n; i0 += kChunk) {
      const std::size_t len = std::min(kChunk, n - i0);
      // The phase k du d with its rounding error carried (fma: both products'
      // errors are exact), e^(i (th + eth)) - 1 to first order in eth: the
      // seed is then right to a few ulp however large th is (rounding th
      // alone cost ~eps |th|, which the charge below does not cover).
      auto seed = [&](int k, double* r, double* im) {
        const double kd = static_cast<double>(k), p = kd * du, ep = std::fma(kd, du, -p);
        for (std::size_t j = 0; j < len; ++j) {
          const double d = d_[i0 + j], th = p * d, eth = std::fma(p, d, -th) + ep * d;
          const double sh = std::sin(0.5 * th), sn = std::sin(th), cs = 1.0 - 2.0 * sh * sh;
          r[j] = -2.0 * sh * sh - sn * eth;
          im[j] = sn + cs * eth;
        }
      };
      seed(1, e1r, e1i);
      for (int k = 1; k <= K; ++k) {
        if (k == 1) {
          std::copy(e1r, e1r + len, er);
          std::copy(e1i, e1i + len, ei);
        } else if (k % kReseed == 1) {
          seed(k, er, ei);  // (re-seeded now and then, so rounding cannot drift)
        }
        double sums[4];
        detail::cf_sweep(len, k > 1 && k % kReseed != 1, e1r, e1i, er, ei, w_.data() + i0, dw_.data() + i0, sums);
        auto& a = acc[static_cast<std::size_t>(k)];
        for (int j = 0; j < 4; ++j) a[j] += sums[j];
      }
    }
  }

 public:

  // Bound (i) on |phi(u)|: the whole law's moments, or a split's.  For a
  // split into parts of masses m_A + m_B = 1 with |phi_A| <= beta_A and
  // |phi_B| <= beta_B (each part normalised), |phi| <= m_A beta_A + m_B beta_B,
  // which is beta_hi - m_lo (beta_hi - beta_lo) with m_lo the mass of the part
  // with the smaller beta: it decreases in that mass, so the node mass
  // lowered by kCfMomentRtol (relative) keeps it valid.  (Widening the whole
  // sum instead would erase a contraction smaller than kCfMomentRtol, which
  // is all a narrow near-atom part gives at small u, yet raised to the power
  // of many steps it decides the bound.)  May exceed 1.
  double moment_bound(double u) const {
    double best = detail::moment_bound(whole_, u, kCfMomentRtol);
    for (const auto& [a, b] : splits_) {
      const double ba = std::min(1.0, detail::moment_bound(a, u, kCfMomentRtol));
      const double bb = std::min(1.0, detail::moment_bound(b, u, kCfMomentRtol));
      const double low_mass = (ba <= bb ? a.mass : b.mass) * (1.0 - kCfMomentRtol);
      best = std::min(best, std::max(ba, bb) - low_mass * std::fabs(bb - ba));
    }
    return best + coarse_error_;
  }

  // The bound (v) at u: for a split of the loss at v_s,
  //   |phi(u)| <= m_below + f(v_s) / u + (|f'(v_s)| + ||f''||_1 above) / u^2
  // (integration by parts twice on the part above), or the same with the
  // roles of above and below exchanged.  Decreases in u.
  // `edge`, where given, receives the edge that gives the bound.
  double second_order_bound(double u, std::size_t* edge = nullptr) const {
    double best = 1.0;
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      const double v = edge_bound(edges_[i], u);
      if (v < best) {
        best = v;
        if (edge != nullptr) *edge = i;
      }
    }
    return best + coarse_error_;
  }

  // The bound (iv) at u: TV / u; and (iii): with density >= f0 on an
  // interval of the loss of length L, |phi(u)| <= 1 - f0 (L - min(L, 2 / u)).
  // Both decrease in u.
  double tv_bound(double u) const { return tv_bound_from(u, second_order_bound(u)); }

  // tv_bound along increasing u at a fraction of the cost (terms_needed's
  // scan): every edge only where `refresh`, otherwise only the edge that gave
  // the bound at the last refresh.  Any one edge's (v) is itself a bound on
  // |phi(u)|, so this is never below the full bound and still holds; it moves
  // the bound only where the best edge changes between refreshes.  edge ==
  // the number of edges: none was below 1 at the last refresh (then 1 until
  // the next); larger: not refreshed yet.
  double tv_bound_along(double u, std::size_t& edge, bool refresh) const {
    double so;
    if (refresh || edge > edges_.size()) {
      edge = edges_.size();
      so = second_order_bound(u, &edge);
    } else if (edge == edges_.size()) {
      so = 1.0 + coarse_error_;
    } else {
      so = std::min(1.0, edge_bound(edges_[edge], u)) + coarse_error_;
    }
    return tv_bound_from(u, so);
  }

  // (v) at u from one edge: the smaller of its two sides.
  static double edge_bound(const Edge& e, double u) {
    const double common = e.f / u + e.fp / (u * u);
    return std::min(e.mass_below + common + e.f2_above / (u * u), e.mass_above + common + e.f2_below / (u * u));
  }

  double tv_bound_from(double u, double second_order) const {
    double best = std::min(tv_ * (1.0 + kCfMomentRtol) / u + coarse_error_, second_order);
    for (const auto& [f0, len] : floors_)
      best = std::min(best, 1.0 - f0 * (len - std::min(len, 2.0 / u)) + coarse_error_);
    return best;
  }

  // beta from (ii) on the block [a, 2a]: intervals of length pi / (2 a) at
  // and beside the mode of the loss density.
  double interval_bound(double a) const {
    const double width = kCfPi / (2.0 * a), floor_l = std::max(m_.pllr_infimum(), -1e300);
    double best = 0.0;
    for (double off : {-0.5, 0.0, -1.0}) {
      const double lo = std::max(mode_l_ + off * width, floor_l), hi = lo + width;
      if (!(hi > lo)) continue;
      // (a sub-interval of I serves as well: clip to the tilted range)
      const double xlo = lo <= floor_l ? cuts_.front() : std::max(m_.pllr_inverse(lo), cuts_.front());
      const double xhi = std::min(m_.pllr_inverse(hi), cuts_.back());
      if (!(xhi > xlo) || !std::isfinite(xlo) || !std::isfinite(xhi)) continue;
      const double lc = 0.5 * (lo + hi);
      auto f = [&](double x) -> Vec<3> {
        const double l = m_.pllr(x), w = std::exp(m_.log_p(x) + b_ * l - log_norm_), dl = l - lc;
        return {w, w * dl, w * dl * dl};
      };
      std::vector<double> cuts{xlo, xhi};
      for (double x : cuts_)
        if (x > xlo && x < xhi) cuts.push_back(x);
      if (mode_x_ > xlo && mode_x_ < xhi) cuts.push_back(mode_x_);
      const auto r = integrate_adaptive<3>(f, cuts, 1e-9);
      if (!r.converged || !(r.value[0] > 0.0)) continue;
      const double mass = r.value[0], mu1 = r.value[1] / mass, v = r.value[2] / mass - mu1 * mu1;
      best = std::max(best, mass * mass * std::max(v, 0.0));
    }
    const double s2 = 1.0 - 4.0 * a * a / (kCfPi * kCfPi) * best * (1.0 - kCfMomentRtol);
    return std::sqrt(std::max(0.0, std::min(1.0, s2))) + coarse_error_;
  }

 private:
  // Gauss-Kronrod nodes on panels of width <= kCfPanelWidth that span at
  // most kCfPanelPhaseWide radians of u_max l; a panel whose mass is below
  // kCfCoarseMass of the peak density times its width need not resolve the
  // phase: it is left out, and six times its mass (width times the largest of
  // nine samples of its density) is charged to every phi.
  bool lay_nodes(double u_max) {
    const GaussianReferencePllr& m = m_;
    auto log_w = [&](double x) { return m.log_p(x) + b_ * m.pllr(x) - shift_; };
    auto panel_mass = [&](double a, double b2) {  // width times the largest of 9 samples
      double mx = -std::numeric_limits<double>::infinity();
      for (int i = 0; i <= 8; ++i) mx = std::max(mx, log_w(a + (b2 - a) * i / 8.0));
      return (b2 - a) * std::exp(mx);
    };
    // (the charge is raised to the power of the steps: beyond 1e11 steps the
    // limit falls with them, so that n times it stays below about 1e-7 of Psi,
    // a hundredth of the allowance: at 7.5e14 steps, sigma 0.354, q 2.42e-12,
    // 1e-18 gave a relative 3e-3 and the inversion declined on it alone.  A
    // lower limit at fewer steps resolves more panels for nothing: at 1e11
    // steps, sigma 0.185, q 1.37e-11, 1e-23 took the work over the cap.)
    const double coarse_limit = kCfCoarseMass * std::min(1.0, 1e11 / count_);
    std::vector<std::pair<double, double>> panels, stack;
    std::vector<char> coarse;
    for (std::size_t i = 0; i + 1 < cuts_.size(); ++i) stack.push_back({cuts_[i], cuts_[i + 1]});
    while (!stack.empty()) {
      const auto [a, b2] = stack.back();
      stack.pop_back();
      const double mid = 0.5 * (a + b2);
      const bool wide = (b2 - a) > kCfPanelWidth;
      const bool fast = u_max * std::fabs(m.pllr(b2) - m.pllr(a)) > kCfPanelPhaseWide;
      if ((wide || fast) && mid > a && mid < b2 && (wide || panel_mass(a, b2) > coarse_limit)) {
        stack.push_back({mid, b2});
        stack.push_back({a, mid});
      } else {
        panels.push_back({a, b2});
        coarse.push_back(fast ? 1 : 0);
      }
      if (static_cast<int>(panels.size() + stack.size()) > kCfMaxPanels) return false;
    }
    {  // in increasing x, so that node order is x order
      std::vector<std::size_t> order(panels.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t k) { return panels[i].first < panels[k].first; });
      std::vector<std::pair<double, double>> p2;
      std::vector<char> c2;
      for (std::size_t i : order) {
        p2.push_back(panels[i]);
        c2.push_back(coarse[i]);
      }
      panels.swap(p2);
      coarse.swap(c2);
    }
    // A panel spanning at most kCfPanelPhase radians of u_max l gets the
    // 15-point Kronrod rule (error: against Gauss 7), one spanning up to
    // kCfPanelPhaseWide the 31-point rule (against Gauss 15), which needs
    // about half the nodes per radian for the same accuracy.
    std::vector<double> l, wkv, wgv;
    panel_start_.clear();
    panel_edge_.clear();
    panel_l_.clear();
    has_coarse_ = false;
    l.reserve(panels.size() * 15);
    wkv.reserve(panels.size() * 15);
    wgv.reserve(panels.size() * 15);
    double coarse_mass = 0.0;
    auto emit = [&](auto kronrod_tag, auto gauss_tag, double a, double b2) {
      using kronrod = decltype(kronrod_tag);
      using gauss = decltype(gauss_tag);
      const auto& xa = kronrod::abscissa();
      const auto& wk = kronrod::weights();
      const auto& wg = gauss::weights();
      const double mid = 0.5 * (a + b2), half = 0.5 * (b2 - a);
      const int n = static_cast<int>(xa.size());
      for (int j = -(n - 1); j <= n - 1; ++j) {  // in increasing x
        const auto i = static_cast<std::size_t>(std::abs(j));
        const double x = mid + (j < 0 ? -1.0 : 1.0) * half * xa[i];
        const double w = std::exp(log_w(x)) * half;
        l.push_back(m.pllr(x));
        wkv.push_back(w * wk[i]);
        wgv.push_back(i % 2 == 0 ? w * wg[i / 2] : 0.0);
      }
    };
    split_node_ = std::numeric_limits<std::size_t>::max();
    for (std::size_t p = 0; p < panels.size(); ++p) {
      const auto [a, b2] = panels[p];
      if (split_node_ == std::numeric_limits<std::size_t>::max() && a >= split_x_) split_node_ = l.size();
      if (coarse[p]) {
        coarse_mass += 3.0 * panel_mass(a, b2);
        has_coarse_ = true;
        continue;
      }
      const double la = m.pllr(a), lb = m.pllr(b2);
      panel_start_.push_back(l.size());
      panel_edge_.push_back(a);
      panel_l_.push_back({la, lb});
      if (u_max * std::fabs(lb - la) <= kCfPanelPhase)
        emit(boost::math::quadrature::gauss_kronrod<double, 15>(), boost::math::quadrature::gauss<double, 7>(), a, b2);
      else
        emit(boost::math::quadrature::gauss_kronrod<double, 31>(), boost::math::quadrature::gauss<double, 15>(), a,
             b2);
    }
    if (split_node_ == std::numeric_limits<std::size_t>::max()) split_node_ = l.size();
    double zk = 0.0, zg = 0.0, mean = 0.0;
    for (std::size_t i = 0; i < l.size(); ++i) {
      zk += wkv[i];
      zg += wgv[i];
      mean += wkv[i] * l[i];
    }
    if (!(zk > 0.0) || !(zg > 0.0) || !std::isfinite(zk)) return false;
    mean_ = mean / zk;
    coarse_error_ = 2.0 * coarse_mass / zk;
    log_norm_ = shift_ + std::log(zk + coarse_mass);
    d_.resize(l.size());
    w_.resize(l.size());
    dw_.resize(l.size());
    abs_dev_ = 0.0;
    for (std::size_t i = 0; i < l.size(); ++i) {
      d_[i] = l[i] - mean_;
      w_[i] = wkv[i] / zk;
      dw_[i] = w_[i] - wgv[i] / zg;
      abs_dev_ += w_[i] * std::fabs(d_[i]);
    }
    abs_dev_ *= 1.0 + 2.0 * static_cast<double>(l.size()) * std::numeric_limits<double>::epsilon();  // (its own rounding)
    return true;
  }

  // psi = (log f)' in x, f the density of l at l(x) (f = g / l', g the
  // tilted density in x): psi = -x + b l' - l'' / l'.
  double log_density_slope(double x) const {
    const PllrSlopes d = m_.pllr_slopes(x);
    return -x + b_ * d.slope - d.curvature;
  }

  // log of the density of l at x: p(x) e^(b l) / (e^K(b) l'(x)).
  double log_density(double x) const {
    return m_.log_p(x) + b_ * m_.pllr(x) - log_norm_ - std::log(m_.pllr_slopes(x).slope);
  }

  // The edges of (v).  ||f''||_1 over each panel by Gauss-Kronrod on
  //   |f''(v)| dv = (f / l') |psi^2 + psi' - (l'' / l') psi| dx,
  // f the density of l at l(x), psi = (log f)' in x,
  //   psi' = -1 + b l'' - l''' / l' + (l'' / l')^2;
  // its error estimate (times kCfErrorFactor) is added.  Masses come from
  // the nodes, widened by kCfMomentRtol.
  void second_order_edges() {
    // (a truncated law's density jumps at x_m: (v) would need its boundary terms; not used)
    if (m_.support_cut()) return;
    auto integrand = [&](double x) -> Vec<1> {
      const PllrSlopes d = m_.pllr_slopes(x);
      const double lp = d.slope;
      const double psi = -x + b_ * lp - d.curvature;
      const double dpsi = -1.0 + b_ * lp * d.curvature - d.third + d.curvature * d.curvature;
      const double lg = log_density(x);
      if (!std::isfinite(lg) || !(lp > 0.0)) return {0.0};
      return {std::exp(lg) / lp * std::fabs(psi * psi + dpsi - d.curvature * psi)};
    };
    const std::size_t np = panel_edge_.size();
    if (np < 2) return;
    std::vector<double> right(np);
    for (std::size_t p = 0; p < np; ++p) right[p] = p + 1 < np ? panel_edge_[p + 1] : cuts_.back();
    std::vector<double> f2(np), mass(np);
    for (std::size_t p = 0; p < np; ++p) {
      auto tol = [](const QuadratureResult<1>& q) { return Vec<1>{1e-7 * q.l1[0]}; };
      const auto r = integrate_to<1, 15>(integrand, {panel_edge_[p], right[p]}, tol, 64);
      f2[p] = r.value[0] + kCfErrorFactor * r.error[0];
      const std::size_t end = p + 1 < np ? panel_start_[p + 1] : w_.size();
      double m = 0.0;
      for (std::size_t i = panel_start_[p]; i < end; ++i) m += w_[i];
      mass[p] = m;
    }
    std::vector<double> f2_above(np + 1, 0.0), mass_above(np + 1, 0.0);
    for (std::size_t p = np; p-- > 0;) {
      f2_above[p] = f2_above[p + 1] + f2[p];
      mass_above[p] = mass_above[p + 1] + mass[p];
    }
    const double total_f2 = f2_above[0], widen = 1.0 + kCfMomentRtol;
    for (std::size_t p = 1; p < np; ++p) {
      const double x = panel_edge_[p], lp = m_.pllr_slopes(x).slope, g = std::exp(log_density(x));
      const double psi = log_density_slope(x);
      if (!std::isfinite(g) || !(lp > 0.0)) continue;
      const double below = (1.0 - mass_above[p]) * widen, above = mass_above[p] * widen;
      edges_.push_back({below, above, g * widen, std::fabs(g * psi / lp) * widen, f2_above[p] * widen,
                        (total_f2 - f2_above[p]) * widen});
      if (x == split_x_) {
        split_edge_ = edges_.back();
        has_split_edge_ = true;
      }
    }
    // no split at all: ||f''||_1 / u^2 (mass 0 on the other side, f = f' = 0 at the ends)
    edges_.push_back({0.0, 0.0, 0.0, 0.0, total_f2 * widen, total_f2 * widen});
  }

  // For a PLLR other than the subsampled Gaussian's, whose density extrema
  // are not known in closed form: with F(x) = f(l(x)), f'(v) dv = F'(x) dx =
  // F psi dx, so TV = int |f'(v)| dv = int F |psi| dx, by adaptive
  // Gauss-Kronrod between the range's cuts plus kCfErrorFactor times its
  // error estimate, plus F at both end cuts (beyond them the density is
  // below e^-80 of its peak and, unimodal there, varies by at most its value
  // at the cut); the mode (where (iii)'s intervals are centred;
  // any place is valid) is the largest density on a grid.  No density
  // floors (iii): they need the intervals around each mode where the
  // density stays above a level, known only from the extrema.
  void tv_by_quadrature() {
    auto integrand = [&](double x) -> Vec<1> {
      const double lg = log_density(x);
      if (!std::isfinite(lg)) return {0.0};
      return {std::exp(lg) * std::fabs(log_density_slope(x))};
    };
    const auto r = integrate_adaptive<1>(integrand, cuts_, 1e-9, 2000);
    auto end_value = [&](double x) {
      const double lg = log_density(x);
      return std::isfinite(lg) ? std::exp(lg) : 0.0;
    };
    tv_ = r.value[0] + kCfErrorFactor * r.error[0] + end_value(cuts_.front()) + end_value(cuts_.back());
    // a truncated law jumps to 0 at x_m: that jump is part of its variation
    if (const auto x_m = m_.support_cut()) tv_ += end_value(*x_m) * (1.0 + kCfMomentRtol);
    double best = -std::numeric_limits<double>::infinity();
    const double lo = cuts_.front(), hi = cuts_.back();
    constexpr int kGrid = 4096;
    for (int i = 0; i <= kGrid; ++i) {
      const double x = lo + (hi - lo) * i / kGrid, lg = log_density(x);
      if (lg > best) {
        best = lg;
        mode_x_ = x;
      }
    }
    mode_l_ = m_.pllr(mode_x_);
    if (!r.converged || !(tv_ > 0.0) || !std::isfinite(tv_)) ok_ = false;
  }

  // The density of l has its extrema where psi(x) = -x - mu + (b + 1) mu r(x)
  // vanishes (r = l' / mu, a logistic function of x): at most three, found by
  // bracketing on the monotone pieces of psi.  TV = 2 (sum of maxima - sum of
  // interior minima).
  void density_extrema() {
    const auto sg = m_.subsampled_gaussian_parameters();
    if (!sg) {
      tv_by_quadrature();
      return;
    }
    const double mu = 1.0 / sg->sigma, q = sg->q;
    auto psi = [&](double x) { return log_density_slope(x); };
    auto root = [&](double lo, double hi) {
      double flo = psi(lo), fhi = psi(hi);
      for (int i = 0; i < 200 && flo <= 0.0; ++i) flo = psi(lo -= std::max(1.0, std::fabs(lo)));
      for (int i = 0; i < 200 && fhi >= 0.0; ++i) fhi = psi(hi += std::max(1.0, std::fabs(hi)));
      auto tol = [](double x, double y) { return std::fabs(x - y) <= 1e-14 * std::max(1.0, std::fabs(x)); };
      return solve_bracket(psi, Bracket{lo, hi, flo, fhi}, tol, 200, End::Middle);
    };
    std::vector<double> maxima, minima;
    const double A = (b_ + 1.0) * mu * mu;
    if (q == 1.0 || A <= 4.0) {
      const double x0 = q == 1.0 ? b_ * mu : 0.0;
      maxima.push_back(q == 1.0 ? x0 : root(x0 - 1.0, x0 + 1.0));
    } else {
      const double disc = std::sqrt(1.0 - 4.0 / A);
      const double rm = 0.5 * (1.0 - disc), rp = 0.5 * (1.0 + disc);
      const double shift = std::log(q) - std::log1p(-q) - 0.5 * mu * mu;
      const double xm = (std::log(rm / (1.0 - rm)) - shift) / mu, xp = (std::log(rp / (1.0 - rp)) - shift) / mu;
      const double pm = psi(xm), pp = psi(xp);
      if (pm >= 0.0) {
        maxima.push_back(root(xp, xp + 1.0));
      } else if (pp <= 0.0) {
        maxima.push_back(root(xm - 1.0, xm));
      } else {
        maxima.push_back(root(xm - 1.0, xm));
        auto tol = [](double x, double y) { return std::fabs(x - y) <= 1e-14 * std::max(1.0, std::fabs(x)); };
        minima.push_back(solve_bracket(psi, Bracket{xm, xp, pm, pp}, tol, 200, End::Middle));
        maxima.push_back(root(xp, xp + 1.0));
      }
    }
    double tv = 0.0, best = -std::numeric_limits<double>::infinity();
    for (double x : maxima) {
      const double lg = log_density(x);
      tv += 2.0 * std::exp(lg);
      if (lg > best) {
        best = lg;
        mode_x_ = x;
      }
    }
    for (double x : minima) tv -= 2.0 * std::exp(log_density(x));
    tv_ = tv;
    mode_l_ = m_.pllr(mode_x_);
    if (!(tv_ > 0.0) || !std::isfinite(tv_)) {
      ok_ = false;
      return;
    }
    // Density floors for (iii): around each mode the density is
    // monotone up to the neighbouring minima (or the range's ends); where it
    // stays >= f0 is an interval [xl, xr], found by bisection keeping the
    // inner end (where density >= f0 has been seen).
    for (double peak : maxima) {
      double left = cuts_.front(), right = cuts_.back();
      for (double x : minima) {
        if (x < peak) left = std::max(left, x);
        if (x > peak) right = std::min(right, x);
      }
      const double log_peak = log_density(peak);
      for (double level : {0.9, 0.7, 0.5, 0.3, 0.1, 0.03}) {
        const double lf0 = log_peak + std::log(level);
        auto crossing = [&](double inner, double outer) {
          if (log_density(outer) >= lf0) return outer;
          for (int i = 0; i < 100 && std::fabs(outer - inner) > 1e-12 * (1.0 + std::fabs(inner)); ++i) {
            const double mid = 0.5 * (inner + outer);
            (log_density(mid) >= lf0 ? inner : outer) = mid;
          }
          return inner;
        };
        const double xl = crossing(peak, left), xr = crossing(peak, right);
        const double width = m_.pllr(xr) - m_.pllr(xl);
        if (width > 0.0) floors_.push_back({std::exp(lf0) * (1.0 - kCfMomentRtol), width * (1.0 - kCfMomentRtol)});
      }
    }
  }

  const GaussianReferencePllr& m_;
  double count_, b_, sign_;
  bool ok_ = true;
  double shift_ = 0.0, log_norm_ = 0.0, mean_ = 0.0, tv_ = 0.0, mode_x_ = 0.0, mode_l_ = 0.0;
  std::vector<double> cuts_;
  std::vector<std::size_t> panel_start_;
  std::vector<double> panel_edge_;  // left edges of the node panels (base layout: contiguous)
  std::vector<std::pair<double, double>> panel_l_;  // l at the left and right edge of each node panel
  bool has_coarse_ = false;                         // some panel was left out (coarse)
  // (v): at each panel edge x_s (loss v_s): the mass below and above, the
  // density f and |f'| there, and the L1 norm of f'' above and below.
  std::vector<Edge> edges_;
  std::vector<std::pair<double, double>> floors_;  // (f0, L) of (iii)
  double coarse_error_ = 0.0;
  LawMoments whole_;
  std::vector<std::pair<LawMoments, LawMoments>> splits_;
  // the split bound's cut, its first node (x >= split_x_), the parts' moments
  // and mass errors (base layout), and the edge (v) at the cut
  double split_x_ = std::numeric_limits<double>::quiet_NaN();
  std::size_t split_node_ = 0;
  LawMoments part_f_, part_j_;
  double f_mass_err_ = 0.0, j_mass_err_ = 0.0;
  Edge split_edge_{};
  bool has_split_edge_ = false;
  std::vector<double> d_, w_, dw_;
  double abs_dev_ = 0.0;  // sum w |d|: the mean absolute deviation of the nodes (rounding)
};

// The split bound (docs/certified.md, "Few sampled steps").
constexpr double kCfSplitTailRtol = 1e-4;   // its truncation + quadrature allowance, relative to the sum
constexpr double kCfSplitFlatShare = 1e-3;  // the flat part's bound at the eps of interest, relative to delta
constexpr int kCfSplitMaxTerms = 16384;

// The cut of the split bound for one step under the tilt b: where the density
// of the loss, p(x) e^(b l(x)) / l'(x) up to a constant, is smallest on
// [max(lo, 0), x(l_cap)] (a grid of 512; any cut is valid).  NaN where that
// is empty.
inline double split_cut(const GaussianReferencePllr& m, double b, double l_cap, double lo, double hi) {
  const double x_cap = std::min(m.pllr_inverse(l_cap), hi), x0 = std::max(lo, 0.0);
  if (!(x_cap > x0) || !std::isfinite(x_cap)) return std::numeric_limits<double>::quiet_NaN();
  double best = std::numeric_limits<double>::infinity(), x_best = std::numeric_limits<double>::quiet_NaN();
  constexpr int kGrid = 512;
  for (int i = 1; i <= kGrid; ++i) {
    const double x = x0 + (x_cap - x0) * i / kGrid;
    const double v = m.log_p(x) + b * m.pllr(x) - std::log(m.pllr_slopes(x).slope);
    if (v < best) {
      best = v;
      x_best = x;
    }
  }
  return x_best;
}

// An upper bound on log int_{-inf}^{x_m} p(x) e^(s l(x)) dx, s > 0: adaptive
// Gauss-Kronrod on [lo, x_m] plus 10 times its error estimate, plus the part
// below lo, at most e^(s l(lo)) Phi(lo) <= e^(s l(lo)) p(lo) / |lo| (l increases).
inline double flat_log_mgf_upper(const GaussianReferencePllr& m, double s, double x_m) {
  const double lo = std::min(-13.0, x_m - 13.0);
  auto logg = [&](double x) { return m.log_p(x) + s * m.pllr(x); };
  std::vector<double> cuts{lo, x_m};
  for (double x : m.breakpoints(s))
    if (x > lo && x < x_m) cuts.push_back(x);
  double shift = -std::numeric_limits<double>::infinity();
  constexpr int kGrid = 64;
  for (int i = 0; i <= kGrid; ++i) shift = std::max(shift, logg(lo + (x_m - lo) * i / kGrid));
  for (double x : cuts) shift = std::max(shift, logg(x));
  if (!std::isfinite(shift)) return std::numeric_limits<double>::infinity();
  auto f = [&](double x) -> Vec<1> { return {std::exp(logg(x) - shift)}; };
  const auto r = integrate_adaptive<1>(f, cuts, 1e-10);
  if (!r.converged || !(r.value[0] > 0.0)) return std::numeric_limits<double>::infinity();
  const double below = std::exp(s * m.pllr(lo) + m.log_p(lo) - std::log(-lo) - shift);
  return shift + std::log(r.value[0] * (1.0 + 1e-12) + kCfErrorFactor * r.error[0] + below);
}

}  // namespace detail

// delta(eps) bracketed by the inversion on the line c, for every eps at once
// (the costly part, Psi on the trapezoid nodes, does not depend on eps).
class CfInversion {
 public:
  struct Value {
    double upper, lower;
    // The inversion's central value, without its error allowance (the
    // estimate's fallback, inversion.hpp): no bound, only an estimate.
    double central = std::numeric_limits<double>::quiet_NaN();
    // The part of upper - lower that is the inversion's own allowance
    // (truncation, quadrature, rounding; not G's margin nor the aliases):
    // what a smaller allowance could remove (detail::allowance_share).
    double allowance = 0.0;
  };

  // Tilt c > 0 (best near the saddle point of G(c) - c eps for the eps of
  // interest); delta_scale: the order of the deltas that will be asked for
  // (sets the period so that the aliases are negligible next to it).
  // The split bound (the first retry where the plain inversion declines;
  // docs/certified.md, "Few sampled steps"): eps_hint, the eps of interest,
  // places its cut.
  static std::optional<CfInversion> build_split(const Composition& comp, Ordering o, double c, double delta_scale,
                                                double eps_hint) {
    CfInversion inv;
    inv.wide_alias_ = true;
    if (!inv.init_split(comp, o, c, delta_scale, eps_hint)) return std::nullopt;
    return inv;
  }

  // wide_alias: the right alias is also tried at t = c / 8 .. c (a bounded
  // law under a large tilt; the retries only, so the plain path keeps its digits).
  // tail_rtol: the truncation + quadrature allowance, relative to the sum.
  // keep_loose: answer even where the error allowance is large against the
  // sum (the check at the end of evaluate), and gate the work only by its
  // count, not by the node estimate (for the truncated bound's candidate
  // tilts: any tilt's bound is valid, and a candidate that declined on
  // either check at one input and answered at its neighbour made a cliff;
  // see detail::saddle_truncated).
  static std::optional<CfInversion> build(const Composition& comp, Ordering o, double c, double delta_scale,
                                          bool wide_alias = false, double tail_rtol = detail::kCfTailRtol,
                                          bool keep_loose = false) {
    CfInversion inv;
    inv.wide_alias_ = wide_alias;
    inv.tail_rtol_ = tail_rtol;
    inv.keep_loose_ = keep_loose;
    if (!inv.init(comp, o, c, delta_scale)) return std::nullopt;
    return inv;
  }

  // The period of the line c (setup_line's, without the steps): the number
  // of terms an inversion needs grows with it.  +inf where the line is unusable.
  static double line_period(const Composition& comp, Ordering o, double c, double delta_scale, bool wide_alias) {
    CfInversion inv;
    inv.wide_alias_ = wide_alias;
    return inv.setup_line(comp, o, c, delta_scale) ? inv.period_ : std::numeric_limits<double>::infinity();
  }

  bool split() const { return split_; }
  // the split bound's flat part at eps (0 for the plain inversion)
  double flat_part(double eps) const { return split_ ? flat_delta(eps) : 0.0; }

  double c() const { return c_; }
  int terms() const { return K_; }

  Value delta(double eps) const {
    // T(eps) = (du / pi) [hh(0) / 2 + sum_k Re(A_k e^(i u_k (M - eps)))]
    const double theta = du_ * (mean_ - eps);
    const std::complex<double> step(std::cos(theta), std::sin(theta));
    std::complex<double> rot = step;
    double sum = split_ ? 0.5 / (c_ * (c_ + 1.0)) * psi_b0_ : 0.5 / (c_ * (c_ + 1.0));
    for (int k = 1; k <= K_; ++k) {
      if (k % 64 == 0) rot = std::polar(1.0, k * theta);
      sum += (a_[static_cast<std::size_t>(k)] * rot).real();
      rot *= step;
    }
    const double t = du_ / detail::kCfPi * sum;
    const double slack = slack_ + du_ / detail::kCfPi * 64.0 * std::numeric_limits<double>::epsilon() * K_ * l1_;
    const double upper = std::exp(g_ + g_margin_ - c_ * eps) * (t + slack) + (split_ ? flat_delta(eps) : 0.0);
    const double alias = std::exp(-c_ * period_) / -std::expm1(-c_ * period_) +
                         std::exp(g1_ + g1_margin_ - (c_ + alias_t_) * eps - alias_t_ * period_) /
                             -std::expm1(-alias_t_ * period_);
    const double lower = std::max(0.0, t - slack) * std::exp(g_ - g_margin_ - c_ * eps) - alias;
    const double central = std::exp(g_ - c_ * eps) * t + (split_ ? flat_delta(eps) : 0.0);
    const double allowance = std::exp(g_ + g_margin_ - c_ * eps) * 2.0 * slack;
    return {std::min(1.0, upper), std::max(0.0, lower), std::clamp(central, 0.0, 1.0), allowance};
  }

 private:
  using Steps = std::vector<detail::TiltedStep>;

  bool init(const Composition& comp, Ordering o, double c, double delta_scale) {
    if (!setup_line(comp, o, c, delta_scale)) return false;
    const double b = o == Ordering::Remove ? c + 1.0 : -c, sign = o == Ordering::Remove ? 1.0 : -1.0;
    Steps steps;
    for (const auto& seg : comp.segments()) {
      const GaussianReferencePllr* m = seg.mechanism->gaussian_reference();
      if (m == nullptr || !m->pllr_increasing()) return false;
      steps.emplace_back(*m, seg.count, b, sign);
      if (!steps.back().ok()) return false;
    }
    // The number of terms K: the smallest whose truncation bound fits the
    // allowance, measured against hh(0) / 2 (a lower bound on the sum's L1
    // scale, so the allowance is conservative).
    const double allowance = tail_rtol_ * 0.5 / (c * (c + 1.0));
    const int K = terms_needed(steps, allowance);
    if (K < 0) return false;
    double estimate = 0.0;
    for (const auto& st : steps) estimate += static_cast<double>(K) * st.estimate_nodes(K * du_);
    // (the coarse panels would not save that much; they can save a factor 16 at 4e12 steps: keep_loose_)
    if (!keep_loose_ && estimate > 2.0 * detail::kCfMaxWork) return false;
    double work = 0.0;
    for (auto& st : steps) {
      if (!st.prepare(K * du_)) return false;
      work += static_cast<double>(K) * static_cast<double>(st.nodes());
    }
    if (work > detail::kCfMaxWork) return false;  // declined: the Chernoff bound stands
    return evaluate(steps, K);
  }

  // The tilt, the CGF at it and the period (shared by both inversions).
  bool setup_line(const Composition& comp, Ordering o, double c, double delta_scale) {
    if (!(c > 0.0) || !std::isfinite(c)) return false;
    c_ = c;
    const TiltedCumulants g = loss_cgf(comp, o, Loss::Y, c, 2, kBoundRtol);
    if (!std::isfinite(g.log_mgf) || !(g.derivative[2] > 0.0)) return false;
    g_ = g.log_mgf;
    g_margin_ = detail::cgf_margin(g);
    const double s = std::sqrt(g.derivative[2]);
    // The period: aliases below 1e-7 of delta_scale.  Left: e^(-c P).  Right,
    // for any t > 0: e^(G(c+t) - (c+t) eps - t P), about
    // delta e^(G(c+t) - G(c) - t M) e^(-t P) near eps = M; the t that needs
    // the shortest period is kept (a heavy right tail favours a small t).
    const double log_target = std::log(std::max(delta_scale, 1e-300)) - std::log(1e7);
    double right = std::numeric_limits<double>::infinity();
    std::vector<double> ts{0.25, 0.5, 1.0, 2.0};
    // A law whose CGF grows fast past c (a mixture with a far component of
    // tiny weight: ELS with k = 8, sigma 1, q 0.01, 1000 steps has
    // G(c + 1/4) - G(c) - M / 4 ~ 4600 where the variance term is 10) needs
    // a small t: 2^-3 .. 2^-10 are tried where t >= 1/4 needs a period above
    // 64 s (there the period was 2000 s and the inversion declined).
    if (wide_alias_)
      for (double f : {0.125, 0.25, 0.5, 1.0})
        if (f * c > 2.0) ts.push_back(f * c);
    auto try_alias = [&](double t) {
      const TiltedCumulants gt = loss_cgf(comp, o, Loss::Y, c + t, 0, kBoundRtol);
      if (!std::isfinite(gt.log_mgf)) return;
      const double p = (std::log(1e7) + std::max(0.0, gt.log_mgf - g_ - t * g.derivative[1])) / t;
      if (p < right) {
        right = p;
        alias_t_ = t;
        g1_ = gt.log_mgf;
        g1_margin_ = detail::cgf_margin(gt);
      }
    };
    for (double t : ts) try_alias(t);
    for (double t = 0.125; t >= 1.0 / 1024.0 && !(right <= 64.0 * s); t *= 0.5) try_alias(t);
    if (!std::isfinite(right)) return false;
    period_ = std::max({-log_target / c, right, 8.0 * s, wide_alias_ ? 0.0 : 1.0});
    du_ = 2.0 * detail::kCfPi / period_;
    return true;
  }

  // ---- The split bound (docs/certified.md, "Few sampled steps") ----
  // Each step's tilted law is cut at x_m into F (x < x_m) and J; A is the
  // event that every step falls in F, B its complement.  R = R_A + R_B with
  // both >= 0.  R_B is inverted as R is (Poisson summation, now with the
  // transform hh (Psi - Psi_F)); R_A is 0 where eps >= sum n l(x_m) and
  // otherwise bounded by the Chernoff bound of the flat measures (flat_delta).
  bool init_split(const Composition& comp, Ordering o, double c, double delta_scale, double eps_hint) {
    // (the add ordering's loss is largest on the flat part: nothing to split off)
    if (o != Ordering::Remove || !(eps_hint > 0.0) || !std::isfinite(eps_hint)) return false;
    if (!setup_line(comp, o, c, delta_scale)) return false;
    const double b = c + 1.0;
    for (double frac : {0.5, 0.25, 0.125}) {
      Steps steps;
      double zero_above = 0.0;
      flat_.clear();
      bool ok = true;
      for (const auto& seg : comp.segments()) {
        const GaussianReferencePllr* m = seg.mechanism->gaussian_reference();
        if (m == nullptr || !m->pllr_increasing()) return false;
        const detail::TiltedRange range = detail::tilted_range(*m, b);
        const double x_m = detail::split_cut(*m, b, frac * eps_hint, range.cuts.front(), range.cuts.back());
        if (!std::isfinite(x_m)) {
          ok = false;
          break;
        }
        steps.emplace_back(*m, seg.count, b, 1.0, x_m);
        if (!steps.back().ok()) {
          ok = false;
          break;
        }
        flat_.push_back({m, seg.count, x_m});
        zero_above += seg.count * m->pllr(x_m);
      }
      if (!ok) continue;
      // (l(x_m) rounded: a relative 1e-12 on the sum covers it)
      zero_above_ = zero_above + 1e-12 * std::fabs(zero_above);
      flat_grid_.clear();
      if (flat_delta(eps_hint) > detail::kCfSplitFlatShare * delta_scale) continue;
      split_ = true;
      return evaluate_split_steps(steps, c);
    }
    return false;
  }

  bool evaluate_split_steps(Steps& steps, double c) {
    // psi_B(0) = 1 - prod m_F^n (its scale; the allowance is relative to it)
    double log_f = 0.0;
    for (const auto& st : steps) log_f += st.count() * std::log1p(-st.j_mass());
    const double scale = -std::expm1(log_f);
    if (!(scale > 0.0)) return false;
    const double allowance = detail::kCfSplitTailRtol * 0.5 / (c * (c + 1.0)) * scale;
    const int K = terms_needed_split(steps, allowance);
    if (K < 0) return false;
    double estimate = 0.0;
    for (const auto& st : steps) estimate += static_cast<double>(K) * st.estimate_nodes(K * du_);
    if (estimate > 2.0 * detail::kCfMaxWork) return false;
    double work = 0.0;
    for (auto& st : steps) {
      if (!st.prepare(K * du_)) return false;
      work += static_cast<double>(K) * static_cast<double>(st.nodes());
    }
    if (work > detail::kCfMaxWork) return false;
    return evaluate_split(steps, K);
  }

  // P(a, b) = prod (a_j + b_j)^(n_j) - prod a_j^(n_j) from la = sum n log a,
  // lr = sum n log1p(b / a): the bound on |Psi - Psi_F| by |phi_F| <= a, |phi_J| <= b.
  static double split_p(double la, double lr) { return std::exp(la) * std::expm1(lr); }

  // Closed-form bound on the terms k > K of the split sum: for u >= u0 =
  // (K + 1) du, b_j(u) <= C_j / u (jump_decay), so with a_j the part F's mass,
  // P <= A e^(D / u0) D / u (expm1(x) <= x e^x, D = sum n_j C_j / a_j,
  // A = prod a_j^(n_j)), and |hh| <= 1 / u^2: the sum is at most
  // A e^(D / u0) D / (2 du (K du)^2).
  double split_closed_tail(const Steps& steps, int K) const {
    const double u0 = (K + 1.0) * du_, uK = K * du_;
    double la = 0.0, d = 0.0;
    for (const auto& st : steps) {
      const double a = st.f_mass_upper();
      la += st.count() * std::log(a);
      d += st.count() * st.jump_decay(u0) / a;
    }
    if (d / u0 > 50.0) return std::numeric_limits<double>::infinity();
    return std::exp(la + d / u0) * d / (2.0 * du_ * uK * uK);
  }

  // The split's K: node bounds |hh| P(a(u), b(u)) until the closed-form tail
  // fits; then the last nodes whose bounds fit the rest of the allowance go.
  int terms_needed_split(const Steps& steps, double allowance) {
    const int k_cap = 8 * detail::kCfMaxTerms;
    double beyond = 0.0;  // as in terms_needed, past kCfSplitMaxTerms
    std::vector<double> term;
    double rest = std::numeric_limits<double>::infinity();
    int next_try = 16;
    for (int k = 1; k <= k_cap; ++k) {
      const double u = k * du_;
      double la = 0.0, lr = 0.0;
      for (const auto& st : steps) {
        const double a = st.flat_bound(u), bj = st.jump_bound(u);
        la += st.count() * std::log(a);
        lr += st.count() * std::log1p(bj / a);
      }
      term.push_back(habs(u) * split_p(la, lr));
      if (k > detail::kCfSplitMaxTerms && (beyond += term.back()) > allowance) return -1;
      if (k >= next_try) {
        rest = split_closed_tail(steps, k);
        if (rest <= 0.5 * allowance) break;
        next_try = static_cast<int>(1.25 * k) + 1;
      }
    }
    if (!(rest <= 0.5 * allowance)) return -1;
    return trim_terms(term, rest, allowance, detail::kCfSplitMaxTerms);
  }

  // Psi_B = Psi - Psi_F on the nodes k = 0..K and its error bound:
  // Psi_F expm1(sum n log1p(phi_J / phi_F)) while every |phi_F| >= 1/2 (no
  // cancellation), else the plain difference; the error of the computed
  // phis (|dF| <= eF, |dJ| <= eJ) moves P's polynomial (non-negative
  // coefficients) by at most P(|F| + eF, |J| + eJ) - P(|F|, |J|).
  bool evaluate_split(const Steps& steps, int K) {
    const auto nk = static_cast<std::size_t>(K) + 1;
    std::vector<std::complex<double>> lf(nk, 0.0), lr(nk, 0.0), lall(nk, 0.0), pf, pj;
    std::vector<double> la_lo(nk, 0.0), lr_lo(nk, 0.0), la_hi(nk, 0.0), lr_hi(nk, 0.0), ef, ej;
    std::vector<char> direct(nk, 0);
    double mean = 0.0;
    for (const auto& st : steps) {
      const double n = st.count();
      mean += n * st.sign() * st.mean();
      st.part_cf(du_, K, false, pf, ef);
      st.part_cf(du_, K, true, pj, ej);
      for (std::size_t k = 0; k < nk; ++k) {
        const std::complex<double> F = pf[k], J = pj[k];
        const double aF = std::abs(F), aJ = std::abs(J);
        if (!(aF > 0.0)) return false;
        lf[k] += n * std::log(F);
        lall[k] += n * std::log(F + J);
        if (aF >= 0.5)
          lr[k] += n * detail::complex_log1p(J / F);
        else
          direct[k] = 1;
        la_lo[k] += n * std::log(aF);
        lr_lo[k] += n * std::log1p(aJ / aF);
        la_hi[k] += n * std::log(aF + ef[k]);
        lr_hi[k] += n * std::log1p((aJ + ej[k]) / (aF + ef[k]));
      }
    }
    mean_ = mean;
    a_.assign(nk, 0.0);
    const double eps = std::numeric_limits<double>::epsilon();
    double l1 = 0.0, qerr = 0.0;
    for (std::size_t k = 0; k < nk; ++k) {
      const double u = static_cast<double>(k) * du_;
      const std::complex<double> hh = 1.0 / (std::complex<double>(c_, u) * std::complex<double>(c_ + 1.0, u));
      std::complex<double> psi_b;
      double rounding;
      if (!direct[k]) {
        const double x = lr[k].real(), y = lr[k].imag(), sh = std::sin(0.5 * y);
        const std::complex<double> em1(std::expm1(x) * std::cos(y) - 2.0 * sh * sh, std::exp(x) * std::sin(y));
        psi_b = std::exp(lf[k]) * em1;
        rounding = 64.0 * eps * std::abs(psi_b) * (1.0 + std::abs(lr[k]) + std::abs(lf[k]));
      } else {
        const std::complex<double> psi = std::exp(lall[k]), psi_f = std::exp(lf[k]);
        psi_b = psi - psi_f;
        rounding = 64.0 * eps * (std::abs(psi) + std::abs(psi_f)) * (1.0 + std::abs(lall[k]) + std::abs(lf[k]));
      }
      const double p_hi = split_p(la_hi[k], lr_hi[k]), p_lo = split_p(la_lo[k], lr_lo[k]);
      const double e = std::max(0.0, p_hi - p_lo) + 1e-14 * p_hi + rounding;
      if (!std::isfinite(e) || !std::isfinite(psi_b.real()) || !std::isfinite(psi_b.imag())) return false;
      qerr += std::abs(hh) * e;
      if (k == 0) {
        psi_b0_ = psi_b.real();
        l1 += 0.5 * std::abs(hh) * std::fabs(psi_b0_);
      } else {
        a_[k] = hh * psi_b;
        l1 += std::abs(a_[k]);
      }
    }
    K_ = K;
    l1_ = l1;
    slack_ = du_ / detail::kCfPi * (tail_ + qerr);
    return psi_b0_ > 0.0 && slack_ <= 10.0 * detail::kCfSplitTailRtol * du_ / detail::kCfPi * l1;
  }

  // delta_A(eps) <= E_Q[(1 - e^(eps - S))_+ ; every step below its cut]:
  // 0 where eps >= sum n l(x_m) (S < eps on A); otherwise the Chernoff bound
  // min_t exp(G_F(t) - t eps + c(t)) of the flat measures,
  // G_F(t) = sum n log int_{x < x_m} p e^((t + 1) l), on a grid of t (any t
  // is valid).
  double flat_delta(double eps) const {
    if (eps >= zero_above_) return 0.0;
    if (flat_grid_.empty()) {
      for (int i = -4; i <= 26; ++i) {
        const double t = c_ * std::exp2(0.5 * i);
        double g = 0.0;
        for (const auto& f : flat_) g += f.count * detail::flat_log_mgf_upper(*f.m, t + 1.0, f.x_m);
        if (std::isfinite(g)) flat_grid_.push_back({t, g + 64.0 * std::numeric_limits<double>::epsilon() * (1.0 + std::fabs(g))});
      }
    }
    double best = 1.0;
    for (const auto& [t, g] : flat_grid_) best = std::min(best, std::exp(g - t * eps + detail::chernoff_c(t)));
    return best;
  }

  double habs(double u) const { return 1.0 / std::sqrt((c_ * c_ + u * u) * ((c_ + 1.0) * (c_ + 1.0) + u * u)); }

  // Truncation bound (units of the sum) on the terms u_k >= a, a = k0 du, by
  // blocks [a, 2a] with the TV and interval bounds (both decreasing in u, so
  // their value at a holds on the block), then the TV closure; +inf where it
  // exceeds `cap`.
  double block_tail(const Steps& steps, double a, double cap) const {
    double n_total = 0.0, log_tv = 0.0, tail = 0.0;
    for (const auto& st : steps) {
      n_total += st.count();
      log_tv += st.count() * std::log(st.tv() * (1.0 + detail::kCfMomentRtol));
    }
    for (int block = 0; block < 400; ++block) {
      bool closable = true;
      for (const auto& st : steps)
        if (st.tv() * (1.0 + detail::kCfMomentRtol) / a > 0.5) closable = false;
      if (closable) {
        // sum_{u_k >= a} |hh| prod (TV / u)^n <= (1 / du) int_{a - du}^inf u^(-2 - N) TV^N du
        const double a0 = a - du_;
        return tail + std::exp(log_tv - (n_total + 1.0) * std::log(a0) - std::log(n_total + 1.0)) / du_;
      }
      // the block's nodes number at most a / du + 1, each term at most |hh(a)| prod beta^n
      const double count_in_block = a / du_ + 1.0;
      double log_beta = 0.0;
      for (const auto& st : steps) log_beta += st.count() * std::log(std::max(std::min(st.tv_bound(a), 1.0), 1e-300));
      double block_sum = count_in_block * habs(a) * std::exp(log_beta);
      if (block_sum > 1e-3 * cap) {
        double lb = 0.0;
        for (const auto& st : steps)
          lb += st.count() * std::log(std::max(std::min({st.tv_bound(a), st.interval_bound(a), 1.0}), 1e-300));
        block_sum = count_in_block * habs(a) * std::exp(lb);
      }
      tail += block_sum;
      if (tail > cap) return std::numeric_limits<double>::infinity();
      a *= 2.0;
    }
    return std::numeric_limits<double>::infinity();
  }

  // Node by node with the moment and TV bounds (i), (iv) while the moment
  // bounds help, then block_tail; K is the first node after which the rest
  // fits the allowance.  -1 where no K <= kCfMaxTerms does.
  int terms_needed(const Steps& steps, double allowance) {
    const int k_cap = 8 * detail::kCfMaxTerms;
    double beyond = 0.0;       // the terms past kCfMaxTerms scanned so far
    std::vector<double> term;  // term[k - 1]: bound on |hh(u_k) Psi(u_k)|
    double rest = std::numeric_limits<double>::infinity();
    int next_try = 16;
    // the edge of each step's bound (v), refreshed every kEdgeRefresh terms
    std::vector<std::size_t> edge(steps.size(), std::numeric_limits<std::size_t>::max());
    constexpr int kEdgeRefresh = 32;
    for (int k = 1; k <= k_cap; ++k) {
      const double u = k * du_;
      double log_beta = 0.0;
      bool helps = false;
      for (std::size_t j = 0; j < steps.size(); ++j) {
        const auto& st = steps[j];
        const double mb = st.moment_bound(u);
        if (mb < 1.0) helps = true;
        const double tv = st.tv_bound_along(u, edge[j], k % kEdgeRefresh == 1);
        log_beta += st.count() * std::log(std::max(std::min({mb, tv, 1.0}), 1e-300));
      }
      term.push_back(habs(u) * std::exp(log_beta));
      // Past kCfMaxTerms every term scanned must end in the tail, so once
      // those alone exceed the allowance no K <= kCfMaxTerms can fit: decline
      // now (the same outcome as scanning on, without the scan's cost, most
      // of a declining inversion's time with few sampled steps).
      if (k > detail::kCfMaxTerms && (beyond += term.back()) > allowance) return -1;
      // Once the terms are negligible (or the moment bounds stop helping),
      // try the block bounds for the rest; if they do not fit yet, scan on.
      if (!helps || (k >= next_try && term.back() * k_cap < 1e-3 * allowance)) {
        rest = block_tail(steps, (k + 1.0) * du_, 0.5 * allowance);
        if (rest <= 0.5 * allowance || !helps) break;
        next_try = 2 * k;
      }
    }
    if (!(rest <= 0.5 * allowance)) {
      // The bounds cannot bridge the middle range: compute Psi exactly up to
      // where the block bounds alone suffice.
      double a = (static_cast<double>(term.size()) + 1.0) * du_;
      for (; a <= detail::kCfMaxTerms * du_; a *= 1.5) {
        rest = block_tail(steps, a, 0.5 * allowance);
        if (rest <= 0.5 * allowance) break;
      }
      if (!(rest <= 0.5 * allowance)) return -1;
      tail_ = rest;
      return static_cast<int>(std::floor(a / du_));
    }
    return trim_terms(term, rest, allowance, detail::kCfMaxTerms);
  }

  // The scanned term bounds, with `rest` bounding everything after them: drop
  // terms from the end into the tail while it stays within the allowance;
  // the number kept (-1 over max_terms), and the tail in tail_.
  int trim_terms(const std::vector<double>& term, double rest, double allowance, int max_terms) {
    double tail = rest;
    int K = static_cast<int>(term.size());
    while (K > 8 && tail + term[static_cast<std::size_t>(K - 1)] <= allowance) tail += term[static_cast<std::size_t>(--K)];
    if (K > max_terms) return -1;
    tail_ = tail;
    return K;
  }

  // Psi on the K nodes and the quadrature error bound; the slack collects
  // truncation and quadrature error.
  bool evaluate(const Steps& steps, int K) {
    std::vector<std::complex<double>> log_psi(static_cast<std::size_t>(K) + 1, 0.0), lp;
    // log_ratio: log(|Psi|_hi / |Psi|) = sum n log1p(err / |phi|), so that the
    // quadrature error below is never negative: as log(|phi| + err) - log|phi|
    // it was the difference of two rounded logs, which 1e11 steps turned
    // into a relative -1e-5 where err / |phi| ~ 1e-21 (sigma 0.3989, q
    // 1.37e-11, 1.01e11 steps: a negative slack, an upper bound below the lower).
    std::vector<double> log_ratio(static_cast<std::size_t>(K) + 1, 0.0), err;
    double mean = 0.0;
    for (const auto& st : steps) {
      mean += st.count() * st.sign() * st.mean();
      st.log_cf(du_, K, lp, err);
      for (int k = 1; k <= K; ++k) {
        const auto kk = static_cast<std::size_t>(k);
        log_psi[kk] += st.count() * lp[kk];
        const double lr = std::log(err[kk]) - lp[kk].real();  // log(err / |phi|), |phi| may underflow
        log_ratio[kk] += st.count() * (lr > 30.0 ? lr + std::log1p(std::exp(-lr)) : std::log1p(std::exp(lr)));
      }
    }
    mean_ = mean;
    a_.assign(static_cast<std::size_t>(K) + 1, 0.0);
    double l1 = 0.5 / (c_ * (c_ + 1.0)), qerr = 0.0;
    for (int k = 1; k <= K; ++k) {
      const auto kk = static_cast<std::size_t>(k);
      const double u = k * du_;
      const std::complex<double> hh = 1.0 / (std::complex<double>(c_, u) * std::complex<double>(c_ + 1.0, u));
      a_[kk] = hh * std::exp(log_psi[kk]);
      l1 += std::abs(a_[kk]);
      const double lr = log_ratio[kk];
      qerr += std::abs(hh) * (lr > 30.0 ? std::exp(log_psi[kk].real() + lr) : std::exp(log_psi[kk].real()) * std::expm1(lr));
    }
    K_ = K;
    l1_ = l1;
    slack_ = du_ / detail::kCfPi * (tail_ + qerr);
    // (an allowance below kCfTailRtol, the refinement deep in the tail, is
    // held to kCfTailRtol's check: its quadrature error need not shrink with it)
    return keep_loose_ || slack_ <= 10.0 * std::max(tail_rtol_, detail::kCfTailRtol) * du_ / detail::kCfPi * l1;
  }

  struct Flat {
    const GaussianReferencePllr* m;
    double count, x_m;
  };
  bool split_ = false, wide_alias_ = false, keep_loose_ = false;
  double tail_rtol_ = detail::kCfTailRtol;
  double psi_b0_ = 0.0, zero_above_ = 0.0;
  std::vector<Flat> flat_;
  mutable std::vector<std::pair<double, double>> flat_grid_;  // (t, upper bound on G_F(t))
  double c_ = 0.0, du_ = 0.0, period_ = 0.0, mean_ = 0.0;
  double g_ = 0.0, g_margin_ = 0.0, g1_ = 0.0, g1_margin_ = 0.0, alias_t_ = 1.0;  // g1_: G(c + alias_t_)
  double slack_ = 0.0, l1_ = 0.0, tail_ = 0.0;
  int K_ = 0;
  std::vector<std::complex<double>> a_;
};

namespace detail {

// The tilt for eps: the saddle point G'(c) = eps, kept at least kCfMinTilt.
constexpr double kCfMinTilt = 0.05;

// The tilt only conditions the inversion (any c > 0 gives a valid bound):
// a hint (the Chernoff bound's optimal t, within a few percent of the
// saddle point) is taken as it is; without one, the saddle point is found
// to 1e-3.
inline double tilt_root(const std::function<double(double)>& phi, double hint) {
  if (hint > 0.0 && std::isfinite(hint)) return hint;
  // A condition that is not finite (a tilted variance that rounds to 0 or
  // below, e.g. a mixture component of weight 1e-23) would send TOMS748 to a
  // NaN tilt: the bound declines by name there instead.
  auto checked = [&phi](double t) {
    const double v = phi(t);
    if (!std::isfinite(v))
      throw Declining<std::runtime_error>("the saddle-point condition is not finite at tilt t = " + fmt(t));
    return v;
  };
  return increasing_root_in_t(checked, 1.0, 4.0, 1e-3);
}

inline double cf_tilt(const Composition& comp, Ordering o, double eps, double hint) {
  const double t = tilt_root([&](double t) { return loss_cgf(comp, o, Loss::Y, t, 1, kBoundRtol).derivative[1] - eps; },
                             hint);
  return std::max(t, kCfMinTilt);
}

// The tilt for a target delta: where the leading saddle-point term
// e^(G(c) - c G'(c)) / (c (c + 1) sqrt(2 pi G''(c))) equals delta (decreasing
// in c).  Only the conditioning of the inversion depends on it.
inline double cf_tilt_for_delta(const Composition& comp, Ordering o, double delta, double hint) {
  const double log_delta = std::log(delta);
  const double t = tilt_root(
      [&](double t) {
        const TiltedCumulants g = loss_cgf(comp, o, Loss::Y, t, 2, kBoundRtol);
        return -(g.log_mgf - t * g.derivative[1] -
                 std::log(t * (t + 1.0) * std::sqrt(2.0 * kCfPi * g.derivative[2])) - log_delta);
      },
      hint);
  return std::max(t, kCfMinTilt);
}

}  // namespace detail

namespace detail {

// The cut x_m of one step of a Gaussian-reference mechanism whose Q is a
// mixture of unit Gaussians (the subsampled Gaussian: weights 1 - q, q at
// means 0, 1 / sigma; ELS's mixture) above which the step's law of x (Q for
// the remove ordering, P = N(0, 1) for add) leaves at most `target`, by
// bisection on the closed-form tail sum_j w_j Phi(m_j - x); `above` is set to
// that law's mass above x_m.  nullopt where no x_m > 0 does (target at or
// above the mass above 0).  Shared by the truncated bound and the rare-jump
// bound (rare_jump.hpp).
inline std::optional<double> step_cut(const std::vector<double>& weights, const std::vector<double>& means, Ordering o,
                                      double target, double& above) {
  auto tail = [&](double x) {
    return o == Ordering::Add ? normal_upper_tail(x) : mixture_upper_tail(weights, means, x);
  };
  if (!(target > 0.0 && target < 0.5)) return std::nullopt;
  // tail(x) decreases: bisect on [lo, hi] with tail(hi) <= target (keep hi);
  // at hi every component's tail is at most target
  const double m_max = *std::max_element(means.begin(), means.end());
  double lo = 0.0, hi = std::max(m_max, 0.0) + std::sqrt(2.0) * boost::math::erfc_inv(2.0 * target);
  if (!std::isfinite(hi) || tail(lo) <= target) return std::nullopt;
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (lo + hi);
    (tail(mid) <= target ? hi : lo) = mid;
  }
  above = tail(hi);
  return hi;
}

inline std::optional<double> step_cut(const SubsampledGaussianParameters& sg, Ordering o, double target,
                                      double& above) {
  return step_cut({1.0 - sg.q, sg.q}, {0.0, 1.0 / sg.sigma}, o, target, above);
}

// The mixture form (weights, means) of Q for the mechanisms step_cut covers:
// the subsampled Gaussian and a Gaussian mixture with non-negative means (its
// PLLR increasing); false for the others.
inline bool gaussian_mixture_form(const Mechanism& mech, std::vector<double>& weights, std::vector<double>& means) {
  auto form = mech.as_gaussian_mixture();
  const GaussianReferencePllr* g = mech.gaussian_reference();
  if (!form || g == nullptr || !g->pllr_increasing()) return false;
  weights = std::move(form->weights);
  means = std::move(form->means);
  return true;
}

// The truncated bound (docs/certified.md, "Few sampled steps"): every step
// restricted to x <= x_m, where the step's law of x (Q = (1 - q) N(0, 1) +
// q N(mu, 1) for the remove ordering, P = N(0, 1) for add) puts
// kCfSplitFlatShare * delta_target / steps above x_m.  Returns the truncated
// composition and sets delta_b to an upper bound on the probability that some
// step is above its cut (the union bound), which bounds the rest of delta;
// nullopt for mechanisms other than those of gaussian_mixture_form.
inline std::optional<Composition> truncated_composition(const Composition& comp, Ordering o, double delta_target,
                                                        double& delta_b) {
  Composition out;
  delta_b = 0.0;
  const double n_total = comp.steps();
  for (const auto& seg : comp.segments()) {
    std::vector<double> weights, means;
    if (!gaussian_mixture_form(*seg.mechanism, weights, means) || !(delta_target > 0.0)) return std::nullopt;
    double above = 0.0;
    const auto x_m = step_cut(weights, means, o, kCfSplitFlatShare * delta_target / n_total, above);
    if (!x_m) return std::nullopt;
    delta_b += seg.count * above * (1.0 + 1e-12);
    out.add(std::make_shared<TruncatedPllr>(seg.mechanism, *seg.mechanism->gaussian_reference(), *x_m), seg.count);
  }
  return out;
}

// Where the plain inversion declines at the tilt floor kCfMinTilt (the
// saddle point sits below it: delta near 1, eps small), the plain inversion on
// the lines 4c and 16c.  Any c > 0 gives a valid bound, and the period, hence
// the number of terms, grows like 1 / c: at the floor it can need more than
// kCfMaxTerms terms (sigma 0.522, q 0.314, 25 steps, eps 0.204, add ordering:
// 4662 terms at c = 0.05, 1154 at c = 0.2, the bound the same to 2e-9), and the
// Chernoff bound, 10 % looser, answered instead.  Only at the floor: away from
// the saddle point the bound loosens (sigma 0.1, q 1e-3, 1000 steps, delta
// 1e-5: 392 at 4c where the other retries give 341), so the caller keeps this
// as one candidate among its retries.
template <class Scale>
std::optional<CfInversion> build_above_floor(const Composition& comp, Ordering o, double c, const Scale& delta_scale) {
  if (!(c <= kCfMinTilt)) return std::nullopt;
  for (double ct = 4.0 * c; ct <= 16.0 * kCfMinTilt; ct *= 4.0)
    if (auto inv = CfInversion::build(comp, o, ct, delta_scale(ct))) return inv;
  return std::nullopt;
}

// The truncated bound's inversion.  Any tilt gives a valid bound; the
// largest tilt that answers gives the smallest eps (sigma 0.66, q = 1e-7, 1e6
// steps, delta = 1e-15: 0.109 at c0 / 2, 0.478 at c0 / 8), and the number of
// terms (and the work) grows with the line's period, which moves unevenly with
// the tilt (the left alias wants a long period at a small tilt, the right
// alias at a large one).  Tilts c0 / 2^(j/4) down to c0 / 64 (not below
// kCfMinTilt) are ranked by their period (cheap: a few CGF values), and those
// within 20 % of the shortest are built first, largest tilt first, then the
// factors of 2 not yet tried; the first that answers is kept.  (Trying only
// c0 / 2^j, the bound answered at one sigma and not at the next: at q
// 9.16e-6, 2898 steps, delta 1.42e-3, c0 / 2 answered at sigma 0.40320, eps
// 0.00449 with 1.1e8 work, and needed 1.20026e8 > kCfMaxWork at 0.40316,
// where the other factors of 2 declined and the split bound gave 0.190;
// c0 / 2^(3/4), the shortest period, answers at both with 0.00449.)  A failed
// build costs about 1.5 ms.
template <class Scale>
std::optional<CfInversion> build_truncated(const Composition& tc, Ordering o, double c0, const Scale& delta_scale) {
  std::vector<std::pair<double, double>> cands;  // (tilt, period), largest tilt first
  double shortest = std::numeric_limits<double>::infinity();
  for (int j = 0; j <= 24; ++j) {
    const double ct = c0 * std::exp2(-0.25 * j);
    if (ct < kCfMinTilt && j > 0) break;
    const double p = CfInversion::line_period(tc, o, ct, delta_scale(ct), true);
    cands.push_back({ct, p});
    shortest = std::min(shortest, p);
  }
  std::vector<char> tried(cands.size(), 0);
  auto build = [&](std::size_t i, double tail_rtol) {
    return CfInversion::build(tc, o, cands[i].first, delta_scale(cands[i].first), true, tail_rtol, true);
  };
  for (std::size_t i = 0; i < cands.size(); ++i) {
    if (!(cands[i].second <= 1.2 * shortest)) continue;
    tried[i] = 1;
    if (auto ti = build(i, kCfTailRtol)) return ti;
  }
  for (std::size_t i = 0; i < cands.size(); i += 4)
    if (!tried[i] && std::isfinite(cands[i].second))
      if (auto ti = build(i, kCfTailRtol)) return ti;
  // The last resort: the shortest periods with the larger allowance (two
  // steps, sigma 1.028, q 1.68e-3, delta 6.17e-4: every tilt needs over
  // kCfMaxTerms terms at 1e-6, and the sampled-count bound's 0.003227 stood
  // against 0.002456 at three steps; at 1e-4, 0.0013165, against PLD's
  // [0.0013038, 0.0013138] at interval 1e-5).
  for (std::size_t i = 0; i < cands.size(); ++i)
    if (tried[i])
      if (auto ti = build(i, kCfLooseTailRtol)) return ti;
  return std::nullopt;
}

// Deep in the tail (delta 1e-13 to 1e-52 with a few sampled steps) the plain
// inversion's allowance, fixed relative to hh(0) / 2, can be most of its
// bound: the tilted law is a near-atom (the steps that sampled nothing) plus
// rare large losses, the saddle point lies between them, and R(0) is a
// cancellation of terms 1e10 times larger (sigma 1.086, q 2.87e-4, 5193
// steps, delta 2.89e-13: t = 4e-11 against an allowance of 1.8e-10, eps
// 0.35805, where the truth is 0.24879).  Where the allowance is more than
// kCfLooseShare of the bound at the answer, the truncated bound is tried as
// well (it drops that cancellation), and where its own allowance is more than
// kCfTightShare of its bound, it is rebuilt on the same line with the
// allowance scaled down to fit (refined_build); the smaller answer is kept.
constexpr double kCfLooseShare = 1e-4;
constexpr int kCfCutBackoffs = 3;  // cf_delta's truncated retry: cuts tried between one that declined and the last built
constexpr double kCfTightShare = 1e-6;

// The share of an upper bound that is the inversion's own error allowance
// (G's margin, about 1e-5 of the bound at large tilts, is left out: neither
// retry can remove it, and counting it sent every such answer to them).
inline double allowance_share(const CfInversion::Value& v) {
  return v.upper > 0.0 ? std::min(1.0, v.allowance / v.upper) : 0.0;
}

// The truncated bound at larger tilts as well, where build_truncated's
// choice (ranked by period, cheapest first) is a smaller tilt than the
// saddle point's c0 and its allowance is more than kCfLooseShare of its
// bound (`share`): the allowance is exp(G(c) - c eps) times the slack, and
// that factor is least at the saddle point.  The tilts c0 / 2^(j/4) above
// the chosen one are built from c0 down, and the first that answers is
// returned (the caller keeps it where it is tighter).  Deep in the tail at
// 1e10-1e12 steps the choices differ by factors of 1e5 to 1e40 (sigma
// 0.6928, q 1.58e-8, 2.02e12 steps, eps 1.675, the cut at 1e-31: c = 26.99
// gave 8.56e-29 with lower bound 0, c0 = 38.17 gave 7.16e-34 with lower
// bound 1.75e-34, at 2.9e5 of the 1.2e8 work cap), and an allowance that is most of
// the bound moved by 3e-4 when one step was added: delta fell along steps.
// Where c0 itself declines, the next tilt down may answer: sigma 0.3639 and
// 0.36395, q 2.16e-11, 4.33e12 steps, delta 2.56e-9: the chosen tilts gave
// eps 0.3656 and 0.1506 (a cliff that the calibration of sigma sat on), c0
// declined at both, and c0 / 2^(1/4) gives 0.1270 and 0.1260.
template <class Scale>
std::optional<CfInversion> saddle_truncated(const Composition& tc, Ordering o, double c0, const Scale& delta_scale,
                                            const CfInversion& chosen, double share) {
  if (!(share > kCfLooseShare)) return std::nullopt;
  for (int j = 0; j <= 24; ++j) {
    const double ct = c0 * std::exp2(-0.25 * j);
    if (!(ct > chosen.c() * (1.0 + 1e-9))) break;
    if (auto ti = CfInversion::build(tc, o, ct, delta_scale(ct), true, kCfTailRtol, true)) return ti;
  }
  return std::nullopt;
}

// The inversion on inv's line again, with its truncation allowance scaled so
// that the share `share` seen at the answer would be about kCfTightShare
// (down to 1e-6 of it); nullopt where the share is already small, or where
// the rebuilt inversion declines (its work over the cap).
inline std::optional<CfInversion> refined_build(const Composition& comp, Ordering o, const CfInversion& inv,
                                                double delta_scale, double share) {
  if (!(share > kCfTightShare)) return std::nullopt;
  const double rtol = kCfTailRtol * std::max(1e-6, kCfTightShare / share);
  return CfInversion::build(comp, o, inv.c(), delta_scale, true, rtol);
}

// The smallest eps whose upper(eps) is at most delta, searched below eps_hi
// from the guess; nullopt where none below eps_hi is.
// zero_ok: where the search runs down to eps ~ 0, eps = 0 itself is
// returned if it meets delta (the retries; the plain path keeps its digits).
// eps_floor: the caller needs no answer below it (cf_epsilon); where
// upper(eps_floor) is already at most delta, eps_floor is returned (a valid
// upper bound) without searching further down.
template <class Upper>
std::optional<double> cf_epsilon_root(const Upper& upper, double delta, double eps_hi, double guess,
                                      bool zero_ok = false, double eps_floor = 0.0) {
  const double log_delta = std::log(delta);
  auto f = [&](double eps) {
    const double u = upper(eps);
    return u > 0.0 ? std::log(u) - log_delta : -745.0;
  };
  // (a truncated law's saddle point can sit at eps < 0, from where the search
  // below would never climb)
  if (!(eps_hi > 0.0)) return std::nullopt;
  if (eps_floor > 0.0 && eps_floor < eps_hi && f(eps_floor) <= 0.0) return eps_floor;
  if (zero_ok) guess = std::max(guess, 0.0);
  // Bracket around the saddle point's eps G'(c), below eps_hi.
  double hi = std::min(eps_hi, 1.02 * guess + 1e-3), fhi = f(hi);
  while (fhi > 0.0) {
    if (hi >= eps_hi) return std::nullopt;  // no better than eps_hi
    hi = std::min(eps_hi, 1.5 * hi + 1e-3);
    fhi = f(hi);
  }
  double lo = 0.98 * std::min(hi, guess), flo = f(lo);
  while (flo <= 0.0) {
    hi = lo;
    fhi = flo;
    if (lo < 1e-9 * eps_hi) return zero_ok && f(0.0) <= 0.0 ? 0.0 : lo;  // the smallest eps seen to meet delta
    lo *= 0.7;
    flo = f(lo);
  }
  auto tol = [](double a, double b) { return std::fabs(b - a) <= 1e-10 * std::max(1e-6, std::fabs(b)); };
  const auto br = narrow_bracket(f, Bracket{lo, hi, flo, fhi}, tol, 100);
  // The answer must itself satisfy upper(eps) <= delta.
  for (double e : {br.first, br.second, hi})
    if (f(e) <= 0.0) return e;
  return hi;
}

}  // namespace detail

// Certified [lower, upper] on delta(eps) for one ordering, or nullopt where
// the inversion declines.  Where the plain inversion declines, the split
// bound and the truncated bound are tried (the tighter upper is kept).
// t_hint: a tilt near the saddle point (e.g. the Chernoff bound's t), or 0.
inline std::optional<CfInversion::Value> cf_delta(const Composition& comp, Ordering o, double eps,
                                                  double t_hint = 0.0) {
  detail::require(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got " + detail::fmt(eps));
  const double c = detail::cf_tilt(comp, o, eps, t_hint);
  auto scale_at = [&](double ct) { return std::exp(loss_cgf(comp, o, Loss::Y, ct, 0, kBoundRtol).log_mgf - ct * eps) * 1e-2; };
  const double scale = scale_at(c);
  const auto inv = CfInversion::build(comp, o, c, scale);
  std::optional<CfInversion::Value> best;
  if (inv) {
    best = inv->delta(eps);
    // The plain inversion stands alone where it resolves its answer (kCfResolvedRtol) and its allowance is not
    // most of the bound; otherwise the retries too (deep in the tail: the truncated bound, kCfLooseShare)
    if (best->lower >= (1.0 - detail::kCfResolvedRtol) * best->upper &&
        !(detail::allowance_share(*best) > detail::kCfLooseShare))
      return best;
  }
  auto keep = [&](const CfInversion::Value& v) {
    if (!best || v.upper < best->upper)
      best = CfInversion::Value{v.upper, best ? std::max(best->lower, v.lower) : v.lower, v.central};
    else best->lower = std::max(best->lower, v.lower);
  };
  if (const auto above = detail::build_above_floor(comp, o, c, scale_at)) keep(above->delta(eps));
  // (each retry's decline, its numerics' DeclineSignal included, only leaves the other's answer or the decline)
  try {
    if (const auto sp = CfInversion::build_split(comp, o, c, scale, eps)) keep(sp->delta(eps));
  } catch (const detail::DeclineSignal&) {  // a retry that cannot answer here (its quadrature); any other error propagates
  }
  try {
    // The truncation aims below the Chernoff-scale delta; where its remainder
    // delta_b is more than 1 % of the truncated part's bound, again with the
    // cut for that bound (up to four more times).  (It went on only while the
    // bound was below 1 % of delta_b, and stopped with delta_b up to 100 times
    // the bound: sigma 1.283, q 1.18e-4, 857 steps, eps 3.19 gave 1.85e-52
    // where the bound itself was ~1e-54.)
    //
    // Where the cut for that bound cannot be built (its inversion needs more
    // work than the cap allows), a cut halfway, in logs, between it and the
    // last one built, up to kCfCutBackoffs times: every cut gives a valid
    // bound, and its remainder delta_b still falls.  (sigma 0.7488, q 2.36e-4,
    // 376 steps, eps 0.04095: the second cut, 2.4e-5, declined, and the first
    // one's remainder 7.3e-6 stayed in the answer, 3.126e-5, while at sigma
    // 0.7414 the second cut answered 2.966e-5: delta rose with sigma.)
    double target = std::min(scale, 1e-2), built = target;
    int backoffs = 0;
    for (int round = 0; round < 5 + detail::kCfCutBackoffs; ++round) {
      double delta_b = 0.0;
      const auto tc = detail::truncated_composition(comp, o, target, delta_b);
      if (!tc) break;
      const double ct = detail::cf_tilt(*tc, o, eps, 0.0);
      auto scale_t = [&](double x) {
        return std::exp(loss_cgf(*tc, o, Loss::Y, x, 0, kBoundRtol).log_mgf - x * eps) * 1e-2;
      };
      auto ti = detail::build_truncated(*tc, o, ct, scale_t);
      if (!ti) {
        if (round == 0 || ++backoffs > detail::kCfCutBackoffs) break;
        target = std::sqrt(built) * std::sqrt(target);
        continue;
      }
      CfInversion::Value v = ti->delta(eps);
      if (auto ts = detail::saddle_truncated(*tc, o, ct, scale_t, *ti, detail::allowance_share(v))) {
        const CfInversion::Value vs = ts->delta(eps);
        if (vs.upper < v.upper) {
          v = vs;
          ti = std::move(ts);
        }
      }
      if (const auto tr = detail::refined_build(*tc, o, *ti, scale_t(ti->c()), detail::allowance_share(v))) {
        const CfInversion::Value vr = tr->delta(eps);
        if (vr.upper < v.upper) v = CfInversion::Value{vr.upper, std::max(v.lower, vr.lower), vr.central, vr.allowance};
      }
      const bool improved = !best || v.upper + delta_b < best->upper;
      keep({std::min(1.0, v.upper + delta_b), v.lower, std::min(1.0, v.central + delta_b)});
      // A cut that built but did not improve on the last one (its inversion
      // loose, every tilt near the saddle point over the cap) is backed off
      // like one that declined: sigma 1.304, q 2.17e-6, 1.5e7 steps, eps
      // 2.976: the cut at 3.9e-94 gave 1.8e-80 at a small tilt, the answer
      // stayed the previous cut's remainder 3.9e-91, and delta rose 34 times
      // from eps 2.947 (1.14e-92) to 2.976; the cut halfway gives 5e-93.
      if (!improved && round > 0) {
        if (++backoffs > detail::kCfCutBackoffs) break;
        target = std::sqrt(built) * std::sqrt(target);
        continue;
      }
      built = target;
      if (!(delta_b > 1e-2 * v.upper) || !(v.upper > 1e-300)) break;
      target = std::max(v.upper, 1e-6 * target);
    }
  } catch (const detail::DeclineSignal&) {  // a retry that cannot answer here (its quadrature); any other error propagates
  }
  return best;
}

// Certified upper bound on eps(delta) for one ordering: the smallest eps whose
// certified upper delta is at most delta, searched below eps_hi (a certified
// eps, e.g. the Chernoff bound's); nullopt where the inversion declines or
// does not improve on eps_hi.  Where the plain inversion declines, the split
// bound and the truncated bound are tried (the smaller eps is kept).
// eps_floor (>= 0): the caller cannot use an answer below it (the add
// ordering below the remove ordering's answer, certified.hpp's
// cf_floor_reached); once a stage certifies eps_floor, the search and the
// later retries stop and eps_floor is returned.  Every value returned is
// still a certified upper bound; with eps_floor = 0 nothing changes.
// central: the same search on the inversions' central values instead of
// their upper bounds (CfInversion::Value::central): an estimate, not a bound.
inline std::optional<double> cf_epsilon(const Composition& comp, Ordering o, double delta, double eps_hi,
                                        double t_hint = 0.0, double eps_floor = 0.0, bool central = false) {
  auto pick = [central](const CfInversion::Value& v) { return central ? v.central : v.upper; };
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  if (!(eps_hi > 0.0) || !std::isfinite(eps_hi)) return std::nullopt;
  const double c = detail::cf_tilt_for_delta(comp, o, delta, t_hint);
  const auto inv = CfInversion::build(comp, o, c, delta);
  const double guess = std::min(loss_cgf(comp, o, Loss::Y, c, 1, kBoundRtol).derivative[1], eps_hi);
  std::optional<double> best;
  if (inv) {
    best = detail::cf_epsilon_root([&](double e) { return pick(inv->delta(e)); }, delta, eps_hi, guess, false,
                                   eps_floor);
    // (the estimate and an answer the plain inversion resolves stand alone: kCfResolvedRtol)
    if (central || !best || *best <= eps_floor) return best;
    const CfInversion::Value v = inv->delta(*best);
    // (and deep in the tail, where the allowance is most of the bound, the truncated bound too: kCfLooseShare)
    if (v.lower >= (1.0 - detail::kCfResolvedRtol) * v.upper && !(detail::allowance_share(v) > detail::kCfLooseShare))
      return best;
  }
  auto keep = [&](const std::optional<double>& e) {
    if (e && (!best || *e < *best)) best = e;
  };
  auto floor_reached = [&] { return eps_floor > 0.0 && best && *best <= eps_floor; };
  if (const auto above = detail::build_above_floor(comp, o, c, [delta](double) { return delta; }))
    keep(detail::cf_epsilon_root([&](double e) { return pick(above->delta(e)); }, delta, eps_hi, guess, false,
                                 eps_floor));
  if (floor_reached()) return best;
  // The split's cut follows the eps of interest; where the answer lands so far
  // below the hint that the flat part's bound matters there, once more with
  // the tilt and the cut for the answer.
  try {
    double c_split = c, hint = guess;
    for (int round = 0; round < 2; ++round) {
      auto sp = CfInversion::build_split(comp, o, c_split, delta, hint);
      if (!sp && round == 0 && t_hint > 0.0) {
        // The split's term count is sensitive to the tilt: where it declines
        // at the hinted tilt (the Chernoff order), the saddle point's may
        // answer (sigma 0.613, q 3.27e-3, 262 steps, delta 1e-5: declined at
        // c = 3.253, 2.2296 at c = 3.172, where Chernoff gives 3.17).
        const double c0 = detail::cf_tilt_for_delta(comp, o, delta, 0.0);
        if (std::fabs(c0 / c_split - 1.0) > 1e-3 && (sp = CfInversion::build_split(comp, o, c0, delta, hint)))
          c_split = c0;
      }
      if (!sp) break;
      const auto e =
          detail::cf_epsilon_root([&](double x) { return pick(sp->delta(x)); }, delta, eps_hi, hint, true, eps_floor);
      keep(e);
      if (floor_reached()) return best;
      if (!e || !(sp->flat_part(*e) > detail::kCfSplitFlatShare * delta) || !(*e > 0.0)) break;
      hint = *e;
      c_split = detail::cf_tilt(comp, o, hint, 0.0);
    }
  } catch (const detail::DeclineSignal&) {  // a retry that cannot answer here (its quadrature); any other error propagates
  }
  if (best && *best == 0.0) return best;  // (nothing beats 0)
  try {
    double delta_b = 0.0;
    if (const auto tc = detail::truncated_composition(comp, o, delta, delta_b)) {
      // from the saddle point's tilt (detail::build_truncated)
      const double c0 = detail::cf_tilt_for_delta(*tc, o, delta, 0.0);
      const auto at_delta = [delta](double) { return delta; };
      if (auto ti = detail::build_truncated(*tc, o, c0, at_delta)) {
        auto root = [&](const CfInversion& inv) {
          const double gt = std::min(loss_cgf(*tc, o, Loss::Y, inv.c(), 1, kBoundRtol).derivative[1], eps_hi);
          return detail::cf_epsilon_root([&](double x) { return pick(inv.delta(x)) + delta_b; }, delta,
                                         best ? *best : eps_hi, gt, true, eps_floor);
        };
        auto e = root(*ti);
        if (e && !central)
          if (auto ts = detail::saddle_truncated(*tc, o, c0, at_delta, *ti, detail::allowance_share(ti->delta(*e))))
            if (const auto es = root(*ts); es && *es < *e) {
              e = es;
              ti = std::move(ts);
            }
        keep(e);
        // its allowance scaled to the bound at the answer (detail::refined_build)
        if (e && !central && !floor_reached())
          if (const auto tr = detail::refined_build(*tc, o, *ti, delta, detail::allowance_share(ti->delta(*e))))
            keep(detail::cf_epsilon_root([&](double x) { return tr->delta(x).upper + delta_b; }, delta, *best,
                                         *e, true, eps_floor));
      }
    }
  } catch (const detail::DeclineSignal&) {  // a retry that cannot answer here (its quadrature); any other error propagates
  }
  return best;
}

}  // namespace edgeworth
