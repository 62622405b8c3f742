// Mechanisms as dominating pairs (P, Q) of one step.
//
// A mechanism here only *describes* a pair of distributions through its
// reference log-density log p(x) and its privacy-loss log-likelihood ratio
// (PLLR) l(x) = log(q(x) / p(x)).  How it is accounted for (CGF, expansions,
// bounds) lives in cgf.hpp and the files after it, so adding a mechanism
// touches no accountant and adding an accountant touches no mechanism.
//
// Orientation: every mechanism is stated in the "remove" ordering of
// dp_accounting (P = the law without the example, Q = the law with it).  The
// "add" ordering is obtained from the same pair by swapping the roles of P and
// Q, which cgf.hpp does for all mechanisms at once.
#pragma once

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgeworth {

// K(s) = log E_P[exp(s l)] and its derivatives K^(j)(s), j = 1..5, at one s.
struct TiltedCumulants {
  double s = 0.0;
  double log_mgf = 0.0;                 // K(s)
  std::array<double, 6> derivative{};   // derivative[j] = K^(j)(s), j >= 1
  double log_mgf_error = 0.0;           // estimated absolute error of K(s)
  int order = 0;                        // highest derivative filled in
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;

  // log of the density of P at x (the reference measure of the integrals).
  virtual double log_p(double x) const = 0;

  // The PLLR l(x) = log(q(x) / p(x)), evaluated without overflow.
  virtual double pllr(double x) const = 0;

  // Points where the tilted integrand p(x) exp(s l(x)) changes character:
  // its modes and the kinks of l.  The quadrature splits the line there.
  virtual std::vector<double> breakpoints(double s) const = 0;

  // A closed form of the tilted cumulants, where one exists; returns false
  // when the caller must integrate numerically.
  virtual bool closed_form(double /*s*/, int /*order*/, TiltedCumulants* /*out*/) const {
    return false;
  }

  virtual std::string describe() const = 0;
};

namespace detail {
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}
// Shortest representation that reads back to the same double.
inline std::string fmt(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}
}  // namespace detail

// The range of noise multipliers and the smallest sampling rate the core
// accepts (see SubsampledGaussian).
constexpr double kSigmaMin = 1e-2;
constexpr double kSigmaMax = 1e6;
constexpr double kQMin = 1e-12;

// The Poisson-subsampled Gaussian mechanism of DP-SGD.
//
// sigma is the noise multiplier (noise std / clipping norm) and q the Poisson
// sampling rate; q = 1 is the plain Gaussian mechanism.  With mu = 1 / sigma:
//   P = N(0, 1),   Q = (1 - q) N(0, 1) + q N(mu, 1),
//   l(x) = log(1 - q + q exp(mu x - mu^2 / 2)).
class SubsampledGaussian final : public Mechanism {
 public:
  SubsampledGaussian(double sigma, double q) : sigma_(sigma), q_(q) {
    // The range is numerical, not mathematical.  Below it one step's privacy
    // loss reaches 1/(2 sigma^2) > 5000 nats, and the CGF and moment
    // quadratures overflow or stop converging (sigma = 1e-3 at q = 1, 1e-160
    // anywhere).  Above it (the end of the noise_multiplier search) the loss
    // is below 1e-6 nats and its cumulants lose their digits (the Edgeworth
    // expansion fails at 1e150, the moments at 1e300).
    detail::require(std::isfinite(sigma) && sigma >= kSigmaMin && sigma <= kSigmaMax,
                    "sigma (noise multiplier) must be in [" + detail::fmt(kSigmaMin) + ", " + detail::fmt(kSigmaMax) +
                        "], got " + detail::fmt(sigma) + "; outside it one step's privacy loss is too large (up to " +
                        "1/(2 sigma^2) nats) or too small for the double-precision quadratures of the core");
    // Likewise numerical: at q = 1e-100 the Edgeworth cumulants underflow and at
    // denormal q the CGF quadrature fails; 1e-12 is far below any sampling rate
    // in use and everything is tested there.
    detail::require(std::isfinite(q) && q >= kQMin && q <= 1.0,
                    "q (sampling rate) must be in [" + detail::fmt(kQMin) + ", 1], got " + detail::fmt(q) +
                        "; below " + detail::fmt(kQMin) +
                        " the privacy loss of a step underflows in the core's cumulants and quadratures");
    mu_ = 1.0 / sigma;
    log_q_ = std::log(q);
    log_1mq_ = std::log1p(-q);
  }

  double sigma() const { return sigma_; }
  double q() const { return q_; }

  double log_p(double x) const override { return -0.5 * x * x - kHalfLog2Pi; }

  double pllr(double x) const override {
    const double z = mu_ * x - 0.5 * mu_ * mu_;
    if (q_ == 1.0) return z;
    // log(1 - q + q e^z): log1p form where q e^z is moderate, otherwise
    // factor out the dominant term so nothing overflows.
    if (z < 30.0) {
      const double t = q_ * std::expm1(z);
      if (t >= -0.5) return std::log1p(t);
      // 1 + t cancels here (q > 1/2 and z far below 0, where l is near its
      // floor log(1 - q)): at q = 1 - 1e-9 it lost 7 digits, enough to stall
      // the moment quadratures.  log((1 - q) + q e^z) summed in logs is exact
      // to a few ulps, and l <= log(1/2) keeps that relative.
      const double a = log_1mq_, b = log_q_ + z;
      return std::max(a, b) + std::log1p(std::exp(-std::fabs(a - b)));
    }
    return z + log_q_ + std::log1p(std::exp(log_1mq_ - log_q_ - z));
  }

  // dl/dx = mu * q e^z / (1 - q + q e^z), in (0, mu).
  double pllr_slope(double x) const {
    const double z = mu_ * x - 0.5 * mu_ * mu_;
    if (q_ == 1.0) return mu_;
    const double a = z + log_q_ - log_1mq_;  // logit of the weight of the shifted part
    return a > 0.0 ? mu_ / (1.0 + std::exp(-a)) : mu_ * std::exp(a) / (1.0 + std::exp(a));
  }

  // x with l(x) = v; -inf for v <= log(1 - q), which l only approaches.
  double pllr_inverse(double v) const {
    if (q_ == 1.0) return (v + 0.5 * mu_ * mu_) / mu_;
    const double e = std::expm1(v) + q_;
    if (!(e > 0.0)) return -std::numeric_limits<double>::infinity();
    return (std::log(e) - log_q_ + 0.5 * mu_ * mu_) / mu_;
  }

  std::vector<double> breakpoints(double s) const override {
    std::vector<double> b{0.0, mu_};
    if (s > 0.0) b.push_back(s * mu_);  // mode of the q N(mu, 1) part when tilted
    if (s < 0.0) {
      // p e^(s l) is log-concave for s < 0: its mode solves x = s l'(x) in [s mu, 0].
      double lo = s * mu_, hi = 0.0;
      for (int i = 0; i < 80 && hi - lo > 1e-9 * (1.0 + std::fabs(lo)); ++i) {
        const double mid = 0.5 * (lo + hi);
        (mid - s * pllr_slope(mid) < 0.0 ? lo : hi) = mid;
      }
      b.push_back(0.5 * (lo + hi));
    }
    if (q_ < 1.0) {
      // where q e^z overtakes 1 - q: l turns from flat to linear
      const double x_turn = (log_1mq_ - log_q_ + 0.5 * mu_ * mu_) / mu_;
      if (std::isfinite(x_turn)) b.push_back(x_turn);
    }
    return b;
  }

  bool closed_form(double s, int order, TiltedCumulants* out) const override {
    if (q_ != 1.0) return false;
    // Plain Gaussian: l ~ N(-mu^2/2, mu^2) under P, so K(s) = s(s-1) mu^2 / 2.
    const double m2 = mu_ * mu_;
    out->s = s;
    out->log_mgf = 0.5 * s * (s - 1.0) * m2;
    out->derivative.fill(0.0);
    out->derivative[1] = (s - 0.5) * m2;
    out->derivative[2] = m2;
    out->log_mgf_error = 0.0;
    out->order = order;
    return true;
  }

  std::string describe() const override {
    return "SubsampledGaussian(sigma=" + detail::fmt(sigma_) + ", q=" + detail::fmt(q_) + ")";
  }

 private:
  static constexpr double kHalfLog2Pi = 0.91893853320467274178;
  double sigma_, q_, mu_, log_q_, log_1mq_;
};

}  // namespace edgeworth
