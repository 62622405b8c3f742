// The remove ordering's delta(eps) by numerical inversion of its Laplace
// transform, conditioned on at least one step leaving the flat part of the
// privacy loss.  It is the fallback of method="tilted" where a single saddle
// point cannot describe the tilted law (few sampled steps in all, q * steps ~
// 0.1..30).  There the Lugannani-Rice estimate is off by percents, and so is
// the same estimate conditioned on the number K of steps that sampled the
// example (measured against PLD: -0.9 % at q = 0.01, sigma = 1, T = 1000;
// +4.2 % at q = 0.005, sigma = 0.8, T = 1000; negative deltas at q = 5e-4,
// sigma = 1, T = 20000 and at sigma = 2, q = 1e-3): the tilted losses of the
// steps that did *not* sample the example are bimodal or heavy-tailed as well
// (rare large noise), so conditioning on K leaves skewness 1.5 to 6.
//
// Exact representation.  Remove ordering: S = sum_i l(W_i), W_i ~ Q_i, and
//   delta(eps) = E[g(S)],  g(s) = (1 - e^(eps - s))_+.
// g has the two-sided Laplace transform e^(-lambda eps) / (lambda (lambda + 1))
// for Re lambda > 0, so for every c > 0 (Bromwich)
//   delta(eps) = e^(G(c) - c eps) / pi * integral_0^inf
//                Re[Psi(u) e^(-iu eps) / ((c + iu)(c + 1 + iu))] du,
// G(c) = sum_segments n K(c + 1) (the Y-loss CGF), Psi(u) = prod phi(u)^n and
// phi(u) = E[e^(iul)] of one step under the law tilted by c + 1 (density
// p(x) e^((c + 1) l(x)) / e^K(c + 1)).  Only the quadratures approximate: over
// x for phi (adaptive Gauss-Kronrod) and over u (adaptive, on doubling panels
// until the integrand is negligible); both report error estimates, and an
// answer whose estimated relative error exceeds 1e-5 is declined.
//
// Conditioning on a step outside the flat part.  With few sampled steps the
// law of S has a near-atom: every step in the flat part of l (l ~ log(1 - q)
// + q e^z, z = mu x - mu^2 / 2, tiny), whose characteristic function decays so
// slowly in u that no quadrature reaches its end.  Each step's law is split
// smoothly by its loss into a flat part (weight rho = Phi((l_m - l) / s_l))
// and the rest (1 - rho): phi = phi_F + phi_J, and
//   prod (phi_F + phi_J)^n = prod phi_F^n  +  [configurations with >= 1 J].
// The all-flat term is dropped; its contribution E[g(S) prod rho(x_i)] is at
// most the hockey-stick Chernoff bound min_t exp(G_F(t) - t eps + c(t)) of the
// flat measure (as in bounds.hpp), which is checked to be negligible and added
// to the error estimate.  l_m = l(x_turn + offset) is placed as high as that
// bound allows (offset <= 2, x_turn where l turns from flat to linear), so
// that the rest starts where l is steep: every remaining configuration holds a
// step with a smooth, wide law, and what is left of Psi decays fast.  It is
// computed as prod phi_F^n expm1(sum n log1p(phi_J / phi_F)) where the two
// terms are close.
//
// The inversion line.  c is the saddle point of the conditioned transform,
// log(e^G(c) - e^G_F(c)) - c eps, lowered while that transform divided by
// c (c + 1) (the integrand at u = 0) grows by at most e^kLift: for the heavy
// tails of small q the saddle point sits where astronomically rare noise
// dominates (the reason the Lugannani-Rice form fails), and a lower line costs
// a bounded cancellation but keeps both quadratures tame.
//
// No state outlives a call: a RemoveInversion holds pointers into the
// composition it was built from and a cache of Psi(u) for its own line.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/math/quadrature/gauss.hpp>
#include <boost/math/quadrature/gauss_kronrod.hpp>

#include "roots.hpp"
#include "bounds.hpp"
#include "cgf.hpp"
#include "expansions.hpp"
#include "quadrature.hpp"

namespace edgeworth {

namespace detail {

// The smooth split of one step's law by its privacy loss l: the flat part
// has weight rho = Phi((l_m - l) / s_l), the rest 1 - rho, with l_m = l(x_m)
// and s_l = (l_m - log(1 - q)) / kTaperSigmas, so that the rest reaches down
// to the near-atom at l = log(1 - q) only with weight Phi(-kTaperSigmas).
// Gaussian in l, the rest's characteristic function decays like e^(-(s_l u)^2/2)
// (an x-space taper is compressed in l where l is flat and decays slowly).
constexpr double kTaperSigmas = 8.0;

struct Taper {
  double xm, lm, sl;
};

inline Taper make_taper(const Mechanism& g, double q, double xm) {
  const double lm = g.pllr(xm);
  return {xm, lm, std::max((lm - std::log1p(-q)) / kTaperSigmas, 1e-300)};
}

// (rho, 1 - rho) at loss l, each to full relative precision, from one erfc.
inline std::pair<double, double> split_weights(double l, const Taper& t) {
  const double a = (l - t.lm) / (t.sl * std::sqrt(2.0));
  if (a >= 0.0) {
    const double f = a > 6.5 ? 0.0 : 0.5 * std::erfc(a);
    return {f, 1.0 - f};
  }
  const double j = a < -6.5 ? 0.0 : 0.5 * std::erfc(-a);
  return {1.0 - j, j};
}

inline double log_part_weight(double l, const Taper& t, bool jump) {
  return log_normal_sf(jump ? (t.lm - l) / t.sl : (l - t.lm) / t.sl);
}

// The point where l turns from flat to linear (q e^z = 1 - q).
inline double pllr_turn(const SubsampledGaussianParameters& g) {
  const double mu = 1.0 / g.sigma;
  return (std::log1p(-g.q) - std::log(g.q) + 0.5 * mu * mu) / mu;
}

// Range and cuts of a log-integrand with the given candidate modes: extended
// until it falls kCut below its largest value (as tilted_range does).
template <class F>
TiltedRange weighted_range(const F& logf, std::vector<double> seeds) {
  constexpr double kCut = 80.0;
  double shift = -std::numeric_limits<double>::infinity(), lo = seeds.front(), hi = seeds.front();
  for (double x : seeds) {
    shift = std::max(shift, logf(x));
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  TiltedRange r;
  r.shift = shift;
  if (!std::isfinite(shift)) return r;  // nothing there (empty cuts)
  double step = 1.0;
  for (int i = 0; i < 200 && logf(lo) - shift > -kCut; ++i, step *= 2.0) lo -= step;
  step = 1.0;
  for (int i = 0; i < 200 && logf(hi) - shift > -kCut; ++i, step *= 2.0) hi += step;
  constexpr int kScan = 64;
  for (int i = 1; i < kScan; ++i) {
    const double x = lo + (hi - lo) * i / kScan, v = logf(x);
    if (v > r.shift) {
      r.shift = v;
      seeds.push_back(x);
    }
  }
  r.cuts.push_back(lo);
  r.cuts.push_back(hi);
  for (double x : seeds)
    if (x > lo && x < hi) r.cuts.push_back(x);
  return r;
}

// log E_Q[rho e^(t l)] = log integral rho p e^((t + 1) l) dx and its
// derivative in t for one step, with rho the flat weight (jump = false) or
// the rest 1 - rho (jump = true); -inf where that part is empty.
struct FlatCgf {
  double value, slope;
};

inline FlatCgf part_cgf(const Mechanism& m, const Taper& taper, double t, bool jump) {
  const double s = t + 1.0;
  auto logf = [&](double x) {
    const double l = m.pllr(x);
    return m.log_p(x) + s * l + log_part_weight(l, taper, jump);
  };
  std::vector<double> seeds = m.breakpoints(s);
  seeds.push_back(taper.xm);
  const TiltedRange range = weighted_range(logf, seeds);
  if (range.cuts.size() < 2) return {-std::numeric_limits<double>::infinity(), 0.0};
  auto f = [&](double x) -> Vec<2> {
    const double l = m.pllr(x);
    const double w = std::exp(m.log_p(x) + s * l + log_part_weight(l, taper, jump) - range.shift);
    return {w, w * l};
  };
  const auto r = integrate_adaptive<2>(f, range.cuts, 1e-11);
  if (!(r.value[0] > 0.0)) return {-std::numeric_limits<double>::infinity(), 0.0};
  return {range.shift + std::log(r.value[0]), r.value[1] / r.value[0]};
}


}  // namespace detail

// The split of a composition: per segment the subsampled Gaussian and its
// x_m = x_turn + offset (no flat part where q = 1: l is linear there).
class FlatSplit {
 public:
  struct Segment {
    const Mechanism* mechanism;  // a subsampled Gaussian
    double count;
    bool flat;  // has a flat part
    detail::Taper taper;
  };

  FlatSplit(const Composition& comp, double offset) : offset_(offset) {
    detail::require(!comp.empty(), "the composition is empty: add at least one segment");
    detail::require(std::isfinite(offset), "offset must be finite, got " + detail::fmt(offset));
    for (const auto& seg : comp.segments()) {
      const auto g = seg.mechanism->subsampled_gaussian_parameters();
      if (!g)
        throw std::domain_error("the tilted (saddle-point) estimate is unreliable here, and its exact fallback "
                                "supports only the subsampled Gaussian, not " + seg.mechanism->describe() +
                                "; use method='certified'");
      const bool flat = g->q < 1.0;
      const detail::Taper taper = flat ? detail::make_taper(*seg.mechanism, g->q, detail::pllr_turn(*g) + offset)
                                       : detail::Taper{0.0, 0.0, 1.0};
      segments_.push_back({seg.mechanism.get(), seg.count, flat, taper});
    }
  }

  const std::vector<Segment>& segments() const { return segments_; }
  double offset() const { return offset_; }
  bool any_flat() const {
    for (const auto& s : segments_)
      if (s.flat) return true;
    return false;
  }

  // G_F(t) = log E[e^(t S) prod rho(x_i)] (sum over segments) and its slope;
  // -inf where some segment has no flat part (the all-flat measure is 0).
  detail::FlatCgf cgf(double t) const {
    detail::FlatCgf total{0.0, 0.0};
    for (const auto& s : segments_) {
      if (!s.flat) return {-std::numeric_limits<double>::infinity(), 0.0};
      const detail::FlatCgf k = detail::part_cgf(*s.mechanism, s.taper, t, false);
      if (!std::isfinite(k.value)) return k;
      total.value += s.count * k.value;
      total.slope += s.count * k.slope;
    }
    return total;
  }

  // The conditioned transform log(E[e^(t S)] - E[e^(t S) prod rho(x_i)])
  // and its slope, from the flat and jump parts of every step separately (so
  // that 1 - e^(G_F - G) keeps its digits when the jump part is tiny).
  detail::FlatCgf conditioned(double t) const {
    double g = 0.0, slope = 0.0, log_all_flat = 0.0;  // G, G', G_F - G
    double flat_slope = 0.0;                          // G_F'
    bool flat = true;
    for (const auto& s : segments_) {
      if (!s.flat) {
        const TiltedCumulants k = tilted_cumulants(*s.mechanism, t + 1.0, 1);
        g += s.count * k.log_mgf;
        slope += s.count * k.derivative[1];
        flat = false;
        continue;
      }
      const detail::FlatCgf f = detail::part_cgf(*s.mechanism, s.taper, t, false);
      const detail::FlatCgf j = detail::part_cgf(*s.mechanism, s.taper, t, true);
      if (!std::isfinite(f.value)) {
        g += s.count * j.value;
        slope += s.count * j.slope;
        flat = false;
        continue;
      }
      const double d = std::isfinite(j.value) ? j.value - f.value : -std::numeric_limits<double>::infinity();
      const double wj = 1.0 / (1.0 + std::exp(-d));  // the jump part's share of the step's tilted mass
      g += s.count * (f.value + std::log1p(std::exp(d)));
      slope += s.count * ((1.0 - wj) * f.slope + (std::isfinite(d) ? wj * j.slope : 0.0));
      log_all_flat -= s.count * std::log1p(std::exp(d));
      flat_slope += s.count * f.slope;
    }
    if (!flat) return {g, slope};
    const double r = std::exp(log_all_flat);  // e^(G_F - G)
    const double one_minus_r = -std::expm1(log_all_flat);
    if (!(one_minus_r > 0.0)) return {-std::numeric_limits<double>::infinity(), 0.0};
    return {g + std::log(one_minus_r), (slope - r * flat_slope) / one_minus_r};
  }

  // Upper bound on the dropped all-flat term E[g(S) prod rho(x_i)]: the
  // hockey-stick Chernoff bound min_t exp(G_F(t) - t eps + c(t)); any t is
  // valid, so the minimisation is coarse.  It stops at the first t whose
  // bound is at most stop_below (> 0), where only that comparison matters.
  double bound(double eps, double stop_below = 0.0) const {
    if (!any_flat()) return 0.0;
    const double log_stop = stop_below > 0.0 ? std::log(stop_below) : -std::numeric_limits<double>::infinity();
    // d/dt [G_F(t) - t eps + c(t)] = G_F'(t) - eps - log(1 + 1/t), increasing.
    auto obj = [&](double t) {
      const detail::FlatCgf k = cgf(t);
      return std::make_pair(k.value - t * eps + detail::chernoff_c(t), k.slope - eps - std::log1p(1.0 / t));
    };
    double lo = 1e-3, hi = 1.0;
    auto at_hi = obj(hi);
    if (!std::isfinite(at_hi.first)) return 0.0;
    double best = at_hi.first;
    if (best <= log_stop) return std::exp(std::min(0.0, best));
    if (at_hi.second < 0.0) {
      while (at_hi.second < 0.0 && hi < 1e6) {
        lo = hi;
        hi *= 4.0;
        at_hi = obj(hi);
        if (!std::isfinite(at_hi.first)) return 0.0;
        best = std::min(best, at_hi.first);
        if (best <= log_stop) return std::exp(std::min(0.0, best));
      }
    } else {
      hi = 1.0;
      lo = 1e-3;
      const auto at_lo = obj(lo);
      best = std::min(best, at_lo.first);
      if (at_lo.second >= 0.0 || best <= log_stop) return std::exp(std::min(0.0, best));
    }
    for (int i = 0; i < 30 && hi / lo > 1.1; ++i) {  // bisection on the increasing slope, in log t
      const double mid = std::sqrt(lo * hi);
      const auto v = obj(mid);
      best = std::min(best, v.first);
      if (best <= log_stop) break;
      (v.second < 0.0 ? lo : hi) = mid;
    }
    return std::exp(std::min(0.0, best));
  }

 private:
  double offset_;
  std::vector<Segment> segments_;
};

namespace detail {

// The split offset: x_m = x_turn + offset, as high as possible (at most
// kMaxOffset) with the all-flat bound at eps below threshold.
constexpr double kMaxOffset = 2.0;

inline double choose_offset(const Composition& comp, double eps, double threshold) {
  auto ok = [&](double offset) { return FlatSplit(comp, offset).bound(eps, threshold) <= threshold; };
  if (!FlatSplit(comp, 0.0).any_flat() || ok(kMaxOffset)) return kMaxOffset;
  double hi = kMaxOffset, lo = kMaxOffset - 4.0;
  while (!ok(lo)) {
    hi = lo;
    lo -= 2.0 * (kMaxOffset - lo);
    if (lo < -1e4)
      throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: no flat part of the privacy "
                              "loss can be set aside at eps = " + fmt(eps) + "; use method='certified'");
  }
  while (hi - lo > 0.2) {
    const double mid = 0.5 * (lo + hi);
    (ok(mid) ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace detail

// The remove ordering's delta(eps) by the conditioned Laplace inversion on the
// line Re lambda = c.  Caches Psi(u), so repeated evaluations (a root search
// on eps) reuse the costly nodes.
class RemoveInversion {
 public:
  struct Value {
    double delta;  // the estimate (>= 0)
    double error;  // estimated absolute error: quadrature over u, plus the all-flat bound when asked for
  };

  static constexpr double kPhiTol = 1e-10;  // accuracy of phi_F (|phi| <= 1) and phi_J / phi_J(0), at u = 0
  static constexpr double kUTol = 1e-9;     // of the u-integral, relative to the integral of |integrand|

  // Work budget (evaluations of the x-integrand, ~0.1 us each): where the
  // relevant losses are far below the large losses that the tilt weights,
  // phi is needed at large u, where those oscillate fast; such cases decline.
  static constexpr long kMaxEvaluations = 1000000;

  // c: the line; saddle: the conditioned saddle point it was lowered from
  // (about minus the slope of log delta there; informative for root searches).
  RemoveInversion(const Composition& comp, double c, double saddle, const FlatSplit& split,
                  long max_evaluations = kMaxEvaluations)
      : c_(c), saddle_(saddle), split_(split), max_evaluations_(max_evaluations) {
    detail::require(std::isfinite(c) && c > 0.0, "the inversion line needs c > 0, got " + detail::fmt(c));
    const TiltedCumulants g = comp.tilted(c + 1.0, 2);
    log_mgf_ = g.log_mgf;
    variance_ = g.derivative[2];
    if (!std::isfinite(log_mgf_) || !(variance_ > 0.0) || !std::isfinite(variance_))
      throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: the CGF of the privacy loss "
                              "is not finite at the inversion line c = " + detail::fmt(c) +
                              "; use method='certified'");
    for (const auto& s : split.segments()) {
      Part p;
      p.segment = s;
      const detail::TiltedRange range = detail::tilted_range(*s.mechanism, c + 1.0);
      p.shift = range.shift;
      p.cuts = range.cuts;
      if (s.flat && s.taper.xm > p.cuts.front() && s.taper.xm < p.cuts.back()) p.cuts.push_back(s.taper.xm);
      parts_.push_back(std::move(p));
    }
    // The scale of Psi: phi_J(0), the tilted mass outside the flat part.
    for (Part& p : parts_) {
      p.jump_mass = 1.0;
      p.jump_mass = std::abs(phi_parts(p, 0.0).second);
    }
  }

  double c() const { return c_; }
  double saddle() const { return saddle_; }
  double offset() const { return split_.offset(); }
  double flat_bound(double eps) const { return split_.bound(eps); }

  Value delta(double eps, bool with_flat_bound) {
    detail::require(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got " + detail::fmt(eps));
    auto integrand = [&](double u) -> Vec<1> {
      const detail::Complex lam(c_, u);
      const detail::Complex v = psi(u) * std::polar(1.0, -u * eps) / (lam * (lam + 1.0));
      return {v.real()};
    };
    // Outer panels [0, a1], [a1, 2 a1], [2 a1, 4 a1], ..., each adaptive
    // (15-point rule: every node costs a quadrature over x), until one adds
    // nothing and the integrand at its end is negligible too; a1 resolves the
    // pole at lambda = 0 and the tilted law's width.
    const double a1 = std::min(c_, 1.0 / std::sqrt(variance_));
    double total = 0.0, error = 0.0, l1 = 0.0, a = 0.0, b = a1;
    bool converged = false;
    for (int k = 0; k < kMaxOuterPanels; ++k) {
      const double l1_before = l1;
      const auto r = integrate_to<1, 15>(
          integrand, {a, b}, [&](const QuadratureResult<1>& q) { return Vec<1>{kUTol * (l1_before + q.l1[0])}; },
          400);
      total += r.value[0];
      error += r.error[0];
      l1 += r.l1[0];
      if (!r.converged) break;
      if (r.l1[0] <= kUTol * l1 && std::fabs(integrand(b)[0]) * b <= kUTol * l1) {
        converged = true;
        break;
      }
      a = b;
      b *= 2.0;
    }
    if (!converged)
      throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: the Laplace inversion of the "
                              "remove ordering did not converge at eps = " + detail::fmt(eps) +
                              "; use method='certified'");
    const double scale = std::exp(log_mgf_ - c_ * eps) / kPi;
    Value v{std::max(0.0, total) * scale, (error + kUTol * l1) * scale};
    if (with_flat_bound) v.error += split_.bound(eps);
    return v;
  }

  std::size_t nodes() const { return cache_.size(); }
  long evaluations() const { return evaluations_; }

 private:
  static constexpr double kPi = 3.14159265358979323846;
  static constexpr int kMaxOuterPanels = 40;

  struct Part {
    FlatSplit::Segment segment;
    double shift = 0.0, jump_mass = 1.0;
    std::vector<double> cuts;
  };

  // Psi(u) - prod phi_F(u)^n.
  detail::Complex psi(double u) {
    const auto it = cache_.find(u);
    if (it != cache_.end()) return it->second;
    detail::Complex log_all = 0.0, log_flat = 0.0, log_ratio = 0.0;
    bool flat = true;
    for (const Part& p : parts_) {
      const auto phi = phi_parts(p, u);
      log_all += p.segment.count * std::log(phi.first + phi.second);
      if (p.segment.flat && std::abs(phi.first) > 0.0) {
        log_flat += p.segment.count * std::log(phi.first);
        log_ratio += p.segment.count * detail::complex_log1p(phi.second / phi.first);
      } else {
        flat = false;
      }
    }
    detail::Complex v;
    if (!flat)
      v = std::exp(log_all);
    else if (std::abs(log_ratio) < 1.0)
      v = std::exp(log_flat) * detail::complex_expm1(log_ratio);
    else
      v = std::exp(log_all) - std::exp(log_flat);
    cache_.emplace(u, v);
    return v;
  }

  // (phi_F(u), phi_J(u)) of one segment's step under the tilt c + 1, to an
  // absolute accuracy of kPhiTol times the tilted mass phi_J(0) outside the
  // flat part (the scale of Psi), relaxed like |lambda (lambda + 1)|^(1/4)
  // (the integrand divides it by |lambda (lambda + 1)|, so what the
  // relaxation admits still has a convergent integral).
  std::pair<detail::Complex, detail::Complex> phi_parts(const Part& p, double u) const {
    const Mechanism& m = *p.segment.mechanism;
    const double tilt = c_ + 1.0;
    const detail::Taper& taper = p.segment.taper;
    const bool flat = p.segment.flat;
    auto f = [&](double x) -> Vec<5> {
      ++evaluations_;
      const double l = m.pllr(x);
      const double w = std::exp(m.log_p(x) + tilt * l - p.shift);
      const auto rho = flat ? detail::split_weights(l, taper) : std::make_pair(0.0, 1.0);
      const double wf = w * rho.first, wj = w * rho.second;
      const double cs = std::cos(u * l), sn = std::sin(u * l);
      return {wf * cs, wf * sn, wj * cs, wj * sn, w};
    };
    const double relax = std::abs(detail::Complex(c_, u) * detail::Complex(c_ + 1.0, u)) / (c_ * (c_ + 1.0));
    const double tol = kPhiTol * std::sqrt(std::sqrt(relax)), tol_j = tol * std::max(p.jump_mass, 1e-200);
    const auto r = integrate_to<5>(
        f, p.cuts,
        [&](const QuadratureResult<5>& q) {
          const double w = q.l1[4];
          return Vec<5>{tol * w, tol * w, tol_j * w, tol_j * w, tol * w};
        },
        1000);
    if (!r.converged || !(r.value[4] > 0.0) || evaluations_ > max_evaluations_)
      throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: the characteristic function "
                              "of the tilted privacy loss " +
                              std::string(r.converged ? "costs too many evaluations" : "did not converge") +
                              " at u = " + detail::fmt(u) + " (the relevant losses are far below the large ones "
                              "that the tilt weights); use method='certified'");
    const double w = r.value[4];
    return {{r.value[0] / w, r.value[1] / w}, {r.value[2] / w, r.value[3] / w}};
  }

  double c_, saddle_;
  FlatSplit split_;
  double log_mgf_ = 0.0, variance_ = 0.0;
  std::vector<Part> parts_;
  std::map<double, detail::Complex> cache_;
  long max_evaluations_;
  mutable long evaluations_ = 0;
};

namespace detail {

// The inversion line for eps: the saddle point c_J of the conditioned
// transform f(c) = log(e^G(c) - e^G_F(c)) - c eps, lowered while
// f(c) - log(c (c + 1)) stays within kLift of its value at c_J; never below
// kMinLine.  `hint` is where to start looking (the plain saddle point).
constexpr double kLift = 1.0;
constexpr double kMinLine = 0.1;

struct InversionLine {
  double c;       // the line
  double saddle;  // the conditioned saddle point c_J (the slope of -log delta near eps)
};

inline InversionLine inversion_line(const FlatSplit& split, double eps, double hint, double lift = kLift) {
  struct Point {
    double f, slope;
  };
  auto at = [&](double c) -> Point {
    const FlatCgf k = split.conditioned(c);
    if (!std::isfinite(k.value))
      throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: the flat part carries all "
                              "the tilted mass at c = " + fmt(c) + "; use method='certified'");
    return {k.value - c * eps, k.slope - eps};
  };
  // Where the jump part's share of the tilted mass underflows (large c with a
  // high split), the transform is not representable: search below that.
  auto representable = [&](double c) { return std::isfinite(split.conditioned(c).value); };
  double lo = kMinLine, hi = std::max(2.0 * kMinLine, hint);
  Point plo = at(lo);
  if (plo.slope >= 0.0) return {kMinLine, kMinLine};
  auto largest_representable = [&](double good, double bad) {
    for (int i = 0; i < 40 && bad - good > 1e-6 * bad; ++i) {
      const double mid = 0.5 * (good + bad);
      (representable(mid) ? good : bad) = mid;
    }
    return good;
  };
  if (!representable(hi)) hi = largest_representable(lo, hi);
  Point phi = at(hi);
  double cj = -1.0;
  while (phi.slope < 0.0) {
    lo = hi;
    plo = phi;
    if (hi > 1e9) throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: no saddle point "
                                          "of the conditioned transform below c = 1e9; use method='certified'");
    if (!representable(2.0 * hi)) {
      hi = largest_representable(hi, 2.0 * hi);
      phi = at(hi);
      if (phi.slope < 0.0) cj = hi;  // the saddle point is beyond reach: take the largest representable line
      break;
    }
    hi *= 2.0;
    phi = at(hi);
  }
  auto tol = [](double a, double b) { return std::fabs(b - a) <= 1e-6 * std::max(1.0, std::fabs(a)); };
  auto slope = [&](double c) { return at(c).slope; };
  if (cj < 0.0) cj = solve_bracket(slope, Bracket{lo, hi, plo.slope, phi.slope}, tol, 60, End::Middle);
  const double target = at(cj).f - std::log(cj * (cj + 1.0)) + lift;
  auto h = [&](double c) { return at(c).f - std::log(c * (c + 1.0)) - target; };
  const double hmin = h(kMinLine), hj = h(cj);
  if (hmin <= 0.0) return {kMinLine, cj};
  if (hj >= 0.0) return {cj, cj};
  return {solve_bracket(h, Bracket{kMinLine, cj, hmin, hj}, tol, 60, End::Middle), cj};
}

}  // namespace detail

}  // namespace edgeworth
