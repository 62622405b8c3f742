// The one primitive: the cumulant generating function of the PLLR,
//     K(s) = log E_P[exp(s l(W))] = log  integral p(x)^(1-s) q(x)^s dx,
// and its derivatives, by adaptive quadrature, for one mechanism and for a
// composition of heterogeneous segments (where CGFs and cumulants add).
//
// Everything else is read off K:
//   X = l(W), W ~ P  has CGF K_X(s) = K(s)          (remove ordering)
//   Y = l(W), W ~ Q  has CGF K_Y(s) = K(s + 1)
//   swapping P and Q (add ordering) gives X' = -Y, Y' = -X:
//                    K_X'(s) = K(1 - s),  K_Y'(s) = K(-s).
// The cumulants of X and Y are the derivatives of K at s = 0 and s = 1.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mechanisms.hpp"
#include "quadrature.hpp"

namespace edgeworth {

enum class Ordering : int { Remove = 0, Add = 1 };
enum class Loss : int { X = 0, Y = 1 };

inline const char* ordering_name(Ordering o) { return o == Ordering::Remove ? "remove" : "add"; }

// Relative tolerance of the quadrature for cumulants, and for the CGF values
// that the bounds use (their error is covered by an explicit margin).
constexpr double kCumulantRtol = 1e-13;
constexpr double kBoundRtol = 1e-11;

namespace detail {

// exp(logw) * phi_0(l) with phi_0(l) = e^l - 1 - l >= 0, and
// exp(logw) * phi_1(l) with phi_1(l) = l e^l - e^l + 1 >= 0, both free of
// cancellation for small |l| (series) and of overflow for large l.
// Since E_P[e^l] = 1:  E_P[l] = -E_P[phi_0(l)]  and  E_Q[l] = E_P[phi_1(l)],
// which keeps the means (~q^2 for small q) accurate to full relative precision.
inline double weighted_phi(int which, double l, double logw) {
  if (std::fabs(l) < 0.05) {
    // sum_{k>=2} c_k l^k with c_k = 1/k! (phi_0) or (k-1)/k! (phi_1)
    double term = 1.0, sum = 0.0;  // term = l^k / k!
    for (int k = 1; k <= 13; ++k) {
      term *= l / k;
      if (k >= 2) sum += (which == 0 ? 1.0 : static_cast<double>(k - 1)) * term;
    }
    return std::exp(logw) * sum;
  }
  if (l > 1.0) {
    // factor e^l out so that exp(logw + l) carries the size
    const double rest = which == 0 ? 1.0 - (1.0 + l) * std::exp(-l) : (l - 1.0) + std::exp(-l);
    return std::exp(logw + l) * rest;
  }
  const double v = which == 0 ? std::expm1(l) - l : std::exp(l) * (l - 1.0) + 1.0;
  return std::exp(logw) * v;
}

// exp(logw) * psi_s(l) with psi_s(l) = e^(s l) - 1 - s (e^l - 1), for a tilt
// s > 1 or s < 0, where psi_s >= 0 with a double zero at l = 0.  Since
// E_P[e^l] = 1, K(s) = log(1 + E_P[psi_s(l)]): a small K is then the log1p
// of a small integral of a one-signed integrand, accurate relative to K, where
// shift + log E_P[e^(s l)] would be accurate only relative to 1.  Each form
// below is a sum of two terms >= 0 (no cancellation), from phi_0 and phi_1:
//   s = 1 + t, t > 0:  psi = t phi_1(l) + e^l phi_0(t l),
//   s < 0:             psi = phi_0(s l) + |s| phi_0(l).
// (s - 1 is exact for a double s >= 1/2.)
inline double weighted_psi(double s, double l, double logw) {
  if (s > 1.0) {
    const double t = s - 1.0;
    if (l == -std::numeric_limits<double>::infinity()) return t * std::exp(logw);  // e^(s l) = e^l = 0
    return t * weighted_phi(1, l, logw) + weighted_phi(0, t * l, logw + l);
  }
  return weighted_phi(0, s * l, logw) + (-s) * weighted_phi(0, l, logw);
}

// Below this |K(s)| the CGF is recomputed from psi_s (above, its value from
// the log of the tilted integral is already accurate relative to K).
constexpr double kSmallCgf = 1e-2;

using Complex = std::complex<double>;

// log(1 + w) without the cancellation of 1 + w for small |w|.
inline Complex complex_log1p(Complex w) {
  if (std::abs(w) < 1e-2) {
    Complex term = w, sum = 0.0;
    for (int k = 1; k <= 10; ++k) {
      sum += term / static_cast<double>(k);
      term *= -w;
    }
    return sum;
  }
  return std::log(1.0 + w);
}

// e^d - 1 without cancellation for small |d|.
inline Complex complex_expm1(Complex d) {
  const double a = d.real(), b = d.imag(), h = std::sin(0.5 * b);
  return {std::expm1(a) * std::cos(b) - 2.0 * h * h, std::exp(a) * std::sin(b)};
}

// Range and split points of the tilted integrand p(x) exp(s l(x)): the
// mechanism's breakpoints, extended outwards until the log-integrand has
// fallen kCut below its largest value at the breakpoints.
struct TiltedRange {
  std::vector<double> cuts;
  double shift;  // log of the scale factored out of the integrand
  // More cuts, around each significant breakpoint (tilted_range): the CGF's
  // quadrature adds them to `cuts` (quadrature_cuts); the characteristic-
  // function bound lays its own panels on `cuts`.
  std::vector<double> near;
  std::vector<double> quadrature_cuts() const {
    std::vector<double> all = cuts;
    all.insert(all.end(), near.begin(), near.end());
    return all;
  }
};

inline TiltedRange tilted_range(const Mechanism& m, double s) {
  constexpr double kCut = 80.0;  // e^-80 ~ 1.8e-35 relative to the peak
  auto logg = [&](double x) { return m.log_p(x) + s * m.pllr(x); };
  const std::vector<double> b = m.breakpoints(s);
  std::vector<double> lb(b.size());
  double shift = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < b.size(); ++i) shift = std::max(shift, lb[i] = logg(b[i]));
  if (!std::isfinite(shift)) throw detail::Declining<std::runtime_error>("CGF integrand is not finite at s = " + fmt(s));
  // Only breakpoints where the integrand is significant shape the range and
  // the panels.  A far one (e.g. where l turns linear, x ~ 9000 for sigma =
  // 1000, q = 1e-4) would otherwise make a panel so wide that none of its
  // nodes sees the mass at its near end, and the quadrature would "converge"
  // on a wrong value.
  std::vector<double> sig;
  for (std::size_t i = 0; i < b.size(); ++i)
    if (lb[i] >= shift - kCut) sig.push_back(b[i]);
  double lo = *std::min_element(sig.begin(), sig.end()), hi = *std::max_element(sig.begin(), sig.end());
  double step = 1.0;
  for (int i = 0; i < 200 && logg(lo) - shift > -kCut; ++i, step *= 2.0) lo -= step;
  step = 1.0;
  for (int i = 0; i < 200 && logg(hi) - shift > -kCut; ++i, step *= 2.0) hi += step;
  // Cuts around each significant breakpoint, at distances 1, 3, 7, ... (up to
  // the next one, or to where the integrand has fallen kCut below the peak),
  // so that no panel reaches from one's mass to a far breakpoint: at s = 5.7e6
  // (sigma = 321, q = 1e-12) the tilted q-part peaks at s mu = 17761 while
  // P's mass lies within 8 of 0, and the panel [mu, 17761] had the right half
  // of that mass within a node spacing of its end, where no Gauss-Kronrod node
  // saw it: it "converged" on ~0, K came out as log(1/2) < 0, and the
  // certified eps of the remove ordering as 0.
  std::sort(sig.begin(), sig.end());
  TiltedRange r;
  for (std::size_t i = 0; i < sig.size(); ++i)
    for (int dir : {-1, 1}) {
      const double stop = dir < 0 ? (i > 0 ? sig[i - 1] : lo) : (i + 1 < sig.size() ? sig[i + 1] : hi);
      double dist = 1.0;
      for (int k = 0; k < 200; ++k, dist = 2.0 * dist + 1.0) {
        const double y = sig[i] + dir * dist;
        if (dir * (y - stop) >= 0.0) break;
        r.near.push_back(y);
        if (logg(y) - shift <= -kCut) break;
      }
    }
  // Safety net for a mode the breakpoints missed: a coarse scan of the range.
  constexpr int kScan = 32;
  double x_best = sig.front(), best = shift;
  for (int i = 1; i < kScan; ++i) {
    const double x = lo + (hi - lo) * i / kScan, v = logg(x);
    if (v > best) {
      best = v;
      x_best = x;
    }
  }
  r.shift = best;
  r.cuts.push_back(lo);
  r.cuts.push_back(hi);
  if (best > shift) sig.push_back(x_best);
  for (double x : sig)
    if (x > lo && x < hi) r.cuts.push_back(x);
  return r;
}

}  // namespace detail

namespace detail {

// K(s) = log1p(E_P[psi_s(l)]) for s > 1 or s < 0 (weighted_psi), for a
// mechanism whose p and q are probability densities (probability_pair), replacing
// out.log_mgf and its error where this error is the smaller.  The integrand
// also carries P's mass (the -1) and Q's (the e^l), so the quadrature runs
// over the union of the ranges of p e^(s l), p and q.  Its error bound is
// relative to K: the quadrature's estimate, an allowance for the tails
// outside the range (each of the three densities is cut where it is e^-80 of
// its peak: ~2e-35 (1 + 2 |s|) of mass for these unit-scale densities; 1e-32
// (1 + |s|) is allowed) and the rounding of the integrand and the log1p.
inline void small_log_mgf(const Mechanism& m, double s, const TiltedRange& range, double rtol,
                          TiltedCumulants& out) {
  const TiltedRange r0 = tilted_range(m, 0.0), r1 = tilted_range(m, 1.0);
  const double shift = std::max({range.shift, r0.shift, r1.shift});
  std::vector<double> cuts = range.quadrature_cuts();
  for (const TiltedRange* o : {&r0, &r1}) {
    const std::vector<double> more = o->quadrature_cuts();
    cuts.insert(cuts.end(), more.begin(), more.end());
  }
  auto f = [&](double x) -> Vec<1> { return {weighted_psi(s, m.pllr(x), m.log_p(x) - shift)}; };
  const auto r = integrate_adaptive<1>(f, cuts, rtol);
  const double scale = std::exp(shift);
  const double kept = r.value[0] * scale;
  if (!(kept >= 0.0) || !std::isfinite(kept)) return;  // (the log form stands)
  // A sub-probability pair: the masses left out enter in closed form
  // (Mechanism::masses_left_out).  At 7.5e14 steps, sigma 0.354, q 2.42e-12,
  // the log form's error, 2.5e-14 a step, was a margin of 19 on G(c), and
  // the truncated bound was loose by a factor e^19.
  double integral = kept, out_error = 0.0;
  if (const auto outside = m.masses_left_out()) {
    const double lost = (1.0 - s) * outside->first + s * outside->second;
    integral = kept - lost;
    out_error = 8.0 * std::numeric_limits<double>::epsilon() * (std::fabs(1.0 - s) * outside->first + std::fabs(s) * outside->second);
    if (!(integral > -1.0) || !std::isfinite(integral)) return;
  }
  const double log_mgf = std::log1p(integral);
  const double error = (r.error[0] * scale + 1e-32 * (1.0 + std::fabs(s)) + out_error) / (1.0 + integral) +
                       32.0 * std::numeric_limits<double>::epsilon() * std::fabs(log_mgf);
  if (!(error < out.log_mgf_error)) return;
  out.log_mgf = log_mgf;
  out.log_mgf_error = error;
}

}  // namespace detail

// K(s) and its derivatives up to `order` (0..5) for one mechanism.
inline TiltedCumulants tilted_cumulants(const Mechanism& m, double s, int order, double rtol = kCumulantRtol) {
  detail::require(std::isfinite(s), "tilt s must be finite, got " + detail::fmt(s));
  detail::require(order >= 0 && order <= 5, "order of the CGF derivatives must be in 0..5");
  TiltedCumulants out;
  if (m.closed_form(s, order, &out)) return out;
  out.s = s;
  out.order = order;

  const detail::TiltedRange range = detail::tilted_range(m, s);
  const double shift = range.shift;
  const bool identity = (s == 0.0 || s == 1.0);  // K(0) = K(1) = 0 exactly

  // Pass 1: K(s) and the tilted mean K'(s).
  double mean;
  if (identity) {
    // phi_0(l) and phi_1(l) grow like e^l = q/p, so both integrands carry Q's
    // mass (e.g. near x = 1/sigma): integrate over Q's range (s = 1), which
    // also covers P's.
    const int which = s == 0.0 ? 0 : 1;
    const detail::TiltedRange q_range = s == 1.0 ? range : detail::tilted_range(m, 1.0);
    const double q_shift = q_range.shift;
    auto f = [&](double x) -> Vec<1> { return {detail::weighted_phi(which, m.pllr(x), m.log_p(x) - q_shift)}; };
    const auto r = integrate_adaptive<1>(f, q_range.quadrature_cuts(), rtol);
    const double integral = r.value[0] * std::exp(q_shift);
    mean = which == 0 ? -integral : integral;
    out.log_mgf = 0.0;
    out.log_mgf_error = 0.0;
  } else {
    auto f = [&](double x) -> Vec<2> {
      const double l = m.pllr(x);
      const double w = std::exp(m.log_p(x) + s * l - shift);
      return {w, w * l};
    };
    const auto r = integrate_adaptive<2>(f, range.quadrature_cuts(), rtol);
    if (!(r.value[0] > 0.0) || !std::isfinite(r.value[0]))
      throw detail::Declining<std::runtime_error>("CGF quadrature failed at s = " + detail::fmt(s) + " for " + m.describe());
    const double log_integral = std::log(r.value[0]);
    out.log_mgf = shift + log_integral;
    // the quadrature's error, and the rounding of the sum
    out.log_mgf_error = r.error[0] / r.value[0] +
                        4.0 * std::numeric_limits<double>::epsilon() * (std::fabs(shift) + std::fabs(log_integral));
    mean = r.value[1] / r.value[0];
    if ((s > 1.0 || s < 0.0) && std::fabs(out.log_mgf) < detail::kSmallCgf && (m.probability_pair() || m.masses_left_out()))
      detail::small_log_mgf(m, s, range, rtol, out);
  }
  out.derivative.fill(0.0);
  out.derivative[1] = mean;
  if (order < 2) return out;

  // Pass 2: moments about the mean, then cumulants.
  auto g = [&](double x) -> Vec<6> {
    const double l = m.pllr(x);
    const double w = std::exp(m.log_p(x) + s * l - shift);
    const double d = l - mean;
    return {w, w * d, w * d * d, w * d * d * d, w * d * d * d * d, w * d * d * d * d * d};
  };
  const auto r = integrate_adaptive<6>(g, range.quadrature_cuts(), rtol);
  std::array<double, 6> mom{};
  for (int j = 0; j < 6; ++j) mom[j] = r.value[j] / r.value[0];
  std::array<double, 6> k{};
  detail::cumulants_from_moments(mom, k);
  out.derivative[1] = identity ? mean : mean + mom[1];
  for (int j = 2; j <= 5; ++j) out.derivative[j] = k[j];
  return out;
}

// The most steps a composition may hold: 2^53, the last integer up to which
// every count is a double.  Far beyond any training run; past it the solvers
// met counts near 1e308 that overflowed (a hang at 7e307 steps).
constexpr double kStepsMax = 9007199254740992.0;

// A composition of heterogeneous segments: each is a mechanism run `count`
// times.  K of the composition is sum_i count_i K_i.
class Composition {
 public:
  struct Segment {
    std::shared_ptr<const Mechanism> mechanism;
    double count;
  };

  void add(std::shared_ptr<const Mechanism> m, double count) {
    detail::require(m != nullptr, "mechanism must not be None");
    detail::require(std::isfinite(count) && count >= 1.0 && std::floor(count) == count,
                    "steps (count) must be an integer >= 1, got " + detail::fmt(count));
    detail::require(steps() + count <= kStepsMax,
                    "steps must be at most 2^53 = " + detail::fmt(kStepsMax) + " in all, got " +
                        detail::fmt(steps() + count) + "; beyond it not every count is a double");
    segments_.push_back({std::move(m), count});
  }

  const std::vector<Segment>& segments() const { return segments_; }
  bool empty() const { return segments_.empty(); }

  double steps() const {
    double n = 0.0;
    for (const auto& seg : segments_) n += seg.count;
    return n;
  }

  TiltedCumulants tilted(double s, int order, double rtol = kCumulantRtol) const {
    detail::require(!segments_.empty(), "the composition is empty: add at least one segment");
    TiltedCumulants total;
    total.s = s;
    total.order = order;
    for (const auto& seg : segments_) {
      const TiltedCumulants t = tilted_cumulants(*seg.mechanism, s, order, rtol);
      total.log_mgf += seg.count * t.log_mgf;
      total.log_mgf_error += seg.count * t.log_mgf_error;
      for (int j = 1; j <= order; ++j) total.derivative[j] += seg.count * t.derivative[j];
    }
    return total;
  }

 private:
  std::vector<Segment> segments_;
};

// CGF of the summed privacy loss X or Y in the given ordering, at s.
inline TiltedCumulants loss_cgf(const Composition& c, Ordering o, Loss w, double s, int order,
                                double rtol = kCumulantRtol) {
  if (o == Ordering::Remove) return c.tilted(w == Loss::X ? s : s + 1.0, order, rtol);
  TiltedCumulants t = c.tilted(w == Loss::X ? 1.0 - s : -s, order, rtol);
  t.s = s;
  for (int j = 1; j <= order; j += 2) t.derivative[j] = -t.derivative[j];
  return t;
}

// Cumulants kappa_1..kappa_5 of the summed X and Y of one ordering.
struct LossCumulants {
  std::array<double, 6> x{}, y{};
};

// Both orderings from the two tilts s = 0 and s = 1, indexed by Ordering.
inline std::array<LossCumulants, 2> loss_cumulants(const Composition& c) {
  const TiltedCumulants at0 = c.tilted(0.0, 5), at1 = c.tilted(1.0, 5);
  std::array<LossCumulants, 2> lc;
  for (int j = 1; j <= 5; ++j) {
    const double odd = (j % 2 == 1) ? -1.0 : 1.0;
    lc[0].x[j] = at0.derivative[j];        // X  = l under P
    lc[0].y[j] = at1.derivative[j];        // Y  = l under Q
    lc[1].x[j] = odd * at1.derivative[j];  // X' = -Y
    lc[1].y[j] = odd * at0.derivative[j];  // Y' = -X
  }
  return lc;
}

}  // namespace edgeworth
