// Mechanisms as dominating pairs (P, Q) of one step.
//
// A mechanism here only *describes* a pair of distributions through its
// reference log-density log p(x) and its privacy-loss log-likelihood ratio
// (PLLR) l(x) = log(q(x) / p(x)).  How it is accounted for (CGF, expansions,
// bounds) lives in cgf.hpp and the files after it, so adding a mechanism
// touches no accountant and adding an accountant touches no mechanism.
//
// The accountants never ask a mechanism for its type (no dynamic_cast
// outside bindings.cpp; tests/test_certified_trace.py checks): what a bound
// needs of a mechanism it asks through the virtual queries of Mechanism below
// (gaussian_reference, subsampled_gaussian_parameters, as_gaussian_mixture,
// sampled_weight, within_quadrature_range), each answering "not this kind"
// by default.
//
// Orientation: every mechanism is stated in the "remove" ordering of
// dp_accounting (P = the law without the example, Q = the law with it).  The
// "add" ordering is obtained from the same pair by swapping the roles of P and
// Q, which cgf.hpp does for all mechanisms at once.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
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

class GaussianReferencePllr;

// The parameters of the Poisson-subsampled Gaussian mechanism (see
// SubsampledGaussian).
struct SubsampledGaussianParameters {
  double sigma;  // noise multiplier
  double q;      // sampling rate
};

// Q as a mixture of unit-variance Gaussians against P = N(0, 1): weights and
// means (in units of the noise), as GaussianMixture holds them.
struct GaussianMixtureForm {
  std::vector<double> weights, means;
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

  // The infimum of l over x (-inf where l is unbounded below).  The add
  // ordering's loss is -l under P, so it is at most -pllr_infimum() per step.
  virtual double pllr_infimum() const { return -std::numeric_limits<double>::infinity(); }

  // Whether p and q = p e^l are both probability densities, so that
  // E_P[1] = E_P[e^l] = 1 (K(0) = K(1) = 0).  The small-CGF form of cgf.hpp
  // (K = log1p E_P[psi_s]) rests on these identities; a sub-probability
  // measure (the truncated bound's TruncatedPllr) says false.
  virtual bool probability_pair() const { return true; }

  // For a pair of probability densities restricted to a part of the line (a
  // sub-probability pair: the truncated bound's TruncatedPllr), the masses
  // of P and of Q left out, (P_out, Q_out), in closed form; nullopt for any
  // other mechanism.  With them the small-CGF form still holds:
  // int_kept p e^(s l) = 1 + int_kept p psi_s(l) - (1 - s) P_out - s Q_out.
  virtual std::optional<std::pair<double, double>> masses_left_out() const { return std::nullopt; }

  // The queries through which the bounds learn what they need (see the top
  // of this file).  The Gaussian-reference interface of this mechanism
  // (P = N(0, 1), a smooth PLLR with its slopes and inverse), or nullptr.
  virtual const GaussianReferencePllr* gaussian_reference() const { return nullptr; }

  // (sigma, q) where the pair is the Poisson-subsampled Gaussian mechanism
  // itself; nullopt otherwise.
  virtual std::optional<SubsampledGaussianParameters> subsampled_gaussian_parameters() const { return std::nullopt; }

  // Q as a Gaussian mixture (GaussianMixtureForm) where it is one with the
  // reference P = N(0, 1): the subsampled Gaussian and the Gaussian mixtures
  // (of any means); nullopt otherwise.
  virtual std::optional<GaussianMixtureForm> as_gaussian_mixture() const { return std::nullopt; }

  // The probability that a step samples the example: the weight of the
  // components of Q that differ from P (q for the subsampled mechanisms, the
  // weight of the non-zero means for a mixture); nullopt where Q is not such
  // a split.
  virtual std::optional<double> sampled_weight() const { return std::nullopt; }

  // Whether the CGF quadratures are trusted with this mechanism (false for a
  // mixture with a mean beyond kMixtureMeanMax).
  virtual bool within_quadrature_range() const { return true; }

  virtual std::string describe() const = 0;
};

namespace detail {
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// A numerical step that cannot answer here (a quadrature that does not
// converge, moments that are not finite doubles), deep inside a computation
// that has no value to return instead.  It is thrown as Declining<Base>, so
// that it keeps its standard type (std::runtime_error, std::domain_error) for
// every caller; the certified assembly (certified.hpp) catches this tag, and
// only it, and records it as the bound's named decline.  Any other exception
// is an error and reaches the caller.
struct DeclineSignal {
  virtual ~DeclineSignal() = default;
  virtual const char* reason() const noexcept = 0;
};
template <class Base>
struct Declining final : Base, DeclineSignal {
  using Base::Base;
  const char* reason() const noexcept override { return Base::what(); }
};
// Shortest representation that reads back to the same double.
inline std::string fmt(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// Cumulants from moments about a centre c (m[k] = E[(l - c)^k], m[0] = 1).
inline void cumulants_from_moments(const std::array<double, 6>& m, std::array<double, 6>& k) {
  const double m1 = m[1], m2 = m[2], m3 = m[3], m4 = m[4], m5 = m[5];
  k[2] = m2 - m1 * m1;
  k[3] = m3 - 3 * m2 * m1 + 2 * m1 * m1 * m1;
  k[4] = m4 - 4 * m3 * m1 - 3 * m2 * m2 + 12 * m2 * m1 * m1 - 6 * m1 * m1 * m1 * m1;
  k[5] = m5 - 5 * m4 * m1 - 10 * m3 * m2 + 20 * m3 * m1 * m1 + 30 * m2 * m2 * m1 - 60 * m2 * m1 * m1 * m1 +
         24 * m1 * m1 * m1 * m1 * m1;
}
}  // namespace detail

// The range of noise multipliers and the smallest sampling rate the core
// accepts (see SubsampledGaussian).
constexpr double kSigmaMin = 1e-2;
constexpr double kSigmaMax = 1e6;
constexpr double kQMin = 1e-12;
// The largest |mean| (in noise units) of a GaussianMixture whose CGF the
// quadratures are trusted with: 10 / kSigmaMin.  Beyond it a Gaussian bump of
// unit width sits at the end of a panel thousands wide, where the 15/31-point
// rule can miss it and still report convergence (means (0, 1, 1e4), weights
// (1/2, 1/4, 1/4), 3 steps: Chernoff delta(500) = 0.359 against a true delta
// of at least 0.578), and past 1.3e154 mu^2 overflows and the component drops
// out of the loss (mean 1e300: eps 3.06, where the truth is infinite).  The
// certified path answers there with the quadrature-free sampled-count bound
// alone, or eps = inf / delta = 1 (inversion.hpp); the estimates decline.
constexpr double kMixtureMeanMax = 1e3;

// l'(x) and the ratios l''(x) / l'(x), l'''(x) / l'(x) of a PLLR (the
// ratios stay finite where l' underflows on a flat stretch of l).
struct PllrSlopes {
  double slope = 0.0;      // l' > 0
  double curvature = 0.0;  // l'' / l'
  double third = 0.0;      // l''' / l'
};

// A mechanism whose reference law P is N(0, 1) and whose PLLR is smooth and
// strictly increasing in x: the Gaussian mechanism, its Poisson-subsampled
// version, mixtures of Gaussians with non-negative means.  The
// characteristic-function bound (cf_bound.hpp) works on exactly these: it
// needs the derivatives of l, its inverse and its infimum.
class GaussianReferencePllr : public Mechanism {
 public:
  double log_p(double x) const override { return -0.5 * x * x - kHalfLog2Pi; }

  virtual PllrSlopes pllr_slopes(double x) const = 0;

  // x with l(x) = v; -inf for v at or below pllr_infimum(), which l only
  // approaches.
  virtual double pllr_inverse(double v) const = 0;

  // Whether l is strictly increasing for this instance (a mixture with a
  // negative mean is not, and the characteristic-function bound declines).
  virtual bool pllr_increasing() const { return true; }

  // The point above which P and Q are cut off (their densities jump to 0
  // there), for a sub-probability law restricted to x <= x_m (the truncated
  // bound's TruncatedPllr); nullopt for a law on the whole line.
  virtual std::optional<double> support_cut() const { return std::nullopt; }

  const GaussianReferencePllr* gaussian_reference() const final { return this; }

 protected:
  static constexpr double kHalfLog2Pi = 0.91893853320467274178;
};

// The Poisson-subsampled Gaussian mechanism of DP-SGD.
//
// sigma is the noise multiplier (noise std / clipping norm) and q the Poisson
// sampling rate; q = 1 is the plain Gaussian mechanism.  With mu = 1 / sigma:
//   P = N(0, 1),   Q = (1 - q) N(0, 1) + q N(mu, 1),
//   l(x) = log(1 - q + q exp(mu x - mu^2 / 2)).
class SubsampledGaussian final : public GaussianReferencePllr {
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

  std::optional<SubsampledGaussianParameters> subsampled_gaussian_parameters() const override {
    return SubsampledGaussianParameters{sigma_, q_};
  }
  std::optional<GaussianMixtureForm> as_gaussian_mixture() const override {
    return GaussianMixtureForm{{1.0 - q_, q_}, {0.0, mu_}};
  }
  std::optional<double> sampled_weight() const override { return q_; }

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

  double pllr_infimum() const override {
    return q_ < 1.0 ? log_1mq_ : -std::numeric_limits<double>::infinity();
  }

  // dl/dx = mu * q e^z / (1 - q + q e^z), in (0, mu).
  double pllr_slope(double x) const {
    const double z = mu_ * x - 0.5 * mu_ * mu_;
    if (q_ == 1.0) return mu_;
    const double a = z + log_q_ - log_1mq_;  // logit of the weight of the shifted part
    return a > 0.0 ? mu_ / (1.0 + std::exp(-a)) : mu_ * std::exp(a) / (1.0 + std::exp(a));
  }

  // l' = mu r, l'' / l' = mu (1 - r), l''' / l' = mu^2 (1 - r)(1 - 2 r), with
  // r = l' / mu the weight of the shifted part (a logistic function of x).
  PllrSlopes pllr_slopes(double x) const override {
    if (q_ == 1.0) return {mu_, 0.0, 0.0};
    const double a = mu_ * x - 0.5 * mu_ * mu_ + log_q_ - log_1mq_;
    const double e = std::exp(-std::fabs(a));
    const double r = a > 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    const double one_minus_r = a > 0.0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
    return {mu_ * r, mu_ * one_minus_r, mu_ * mu_ * one_minus_r * (one_minus_r - r)};
  }

  // x with l(x) = v; -inf for v <= log(1 - q), which l only approaches.
  double pllr_inverse(double v) const override {
    detail::require(!std::isnan(v), "v (a value of the privacy loss) must not be NaN");
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
  double sigma_, q_, mu_, log_q_, log_1mq_;
};

// A mixture of Gaussians against the standard Gaussian (unit variance, means
// in units of the noise standard deviation):
//   P = N(0, 1),   Q = sum_j w_j N(mu_j, 1),   w_j >= 0, sum_j w_j = 1,
//   l(x) = log sum_j w_j exp(mu_j x - mu_j^2 / 2).
// It is the one-step dominating pair of example-level sampling (ELS) for
// user-level DP-SGD: with k examples per user sampled at rate q and noise
// multiplier sigma, w_j = Binom(j; k, q) and mu_j = j / sigma; with k = 1 it
// is SubsampledGaussian(sigma, q) (weights (1 - q, q), means (0, 1 / sigma)).
// It is dp_accounting's MixtureOfGaussiansDpEvent(sigma, c_j, p_j) with
// mu_j = c_j / sigma and w_j = p_j.
//
// l is a log-sum-exp of affine functions of x, so it is convex for any means,
// and its slope l'(x) = sum_j pi_j(x) mu_j (pi_j the posterior weights
// w_j e^(z_j) / sum_i w_i e^(z_i)) lies in [min mu_j, max mu_j].  When every
// mean is >= 0 (and one is > 0) l is strictly increasing, from log(w_0) (the
// weight at mean 0; -inf without one) to +inf, and pllr_inverse exists;
// with means of both signs l falls, then rises, and pllr_inverse throws.
// Components of weight 0 are dropped; the weights are renormalised to sum 1
// after the check that they do within 1e-12.
class GaussianMixture final : public GaussianReferencePllr {
 public:
  GaussianMixture(std::vector<double> weights, std::vector<double> means) {
    detail::require(!weights.empty(), "weights must not be empty");
    detail::require(weights.size() == means.size(), "weights and means must have the same length, got " +
                                                        std::to_string(weights.size()) + " and " +
                                                        std::to_string(means.size()));
    double total = 0.0;
    for (std::size_t j = 0; j < weights.size(); ++j) {
      detail::require(std::isfinite(weights[j]) && weights[j] >= 0.0,
                      "weights must be finite and >= 0, got " + detail::fmt(weights[j]));
      detail::require(std::isfinite(means[j]), "means must be finite, got " + detail::fmt(means[j]));
      // Numerical, like sigma's range: a non-zero mean below 1e-100 (in units
      // of the noise) moves nothing measurable, and at subnormal means the
      // infimum and inverse of the loss came out NaN (hypothesis: means
      // 2.2e-309 and -2.2e-308).
      detail::require(means[j] == 0.0 || std::fabs(means[j]) >= 1e-100,
                      "means must be 0 or at least 1e-100 in magnitude, got " + detail::fmt(means[j]) +
                          "; a smaller shift moves nothing and its loss underflows in the core");
      total += weights[j];
    }
    detail::require(std::fabs(total - 1.0) <= 1e-12, "weights must sum to 1 (within 1e-12), got " + detail::fmt(total));
    bool informative = false;
    for (std::size_t j = 0; j < weights.size(); ++j) {
      if (weights[j] == 0.0) continue;
      w_.push_back(weights[j] / total);
      mu_.push_back(means[j]);
      log_w_.push_back(std::log(weights[j] / total));
      if (means[j] != 0.0) informative = true;
    }
    detail::require(informative, "at least one mean with a positive weight must be non-zero (else Q = P)");
    mu_min_ = *std::min_element(mu_.begin(), mu_.end());
    mu_max_ = *std::max_element(mu_.begin(), mu_.end());
  }

  const std::vector<double>& weights() const { return w_; }
  const std::vector<double>& means() const { return mu_; }
  bool monotone() const { return mu_min_ >= 0.0; }
  // Whether every |mean| is within kMixtureMeanMax (see there).
  bool within_quadrature_range() const override { return std::max(-mu_min_, mu_max_) <= kMixtureMeanMax; }
  std::optional<GaussianMixtureForm> as_gaussian_mixture() const override { return GaussianMixtureForm{w_, mu_}; }
  // summed directly, never as 1 - w_0: at q = 1e-7 the rounding of 1 - q
  // would move it by 1e-9 relative
  std::optional<double> sampled_weight() const override {
    double off = 0.0;
    for (std::size_t j = 0; j < w_.size(); ++j)
      if (mu_[j] != 0.0) off += w_[j];
    return off;
  }
  bool pllr_increasing() const override { return monotone() && mu_max_ > 0.0; }

  double pllr(double x) const override {
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < mu_.size(); ++j) top = std::max(top, exponent(j, x));
    double sum = 0.0;
    for (std::size_t j = 0; j < mu_.size(); ++j) sum += std::exp(exponent(j, x) - top);
    return top + std::log(sum);
  }

  // dl/dx = sum_j pi_j(x) mu_j, in [min mu_j, max mu_j]; nondecreasing in x.
  double pllr_slope(double x) const {
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < mu_.size(); ++j) top = std::max(top, exponent(j, x));
    double sum = 0.0, weighted = 0.0;
    for (std::size_t j = 0; j < mu_.size(); ++j) {
      const double e = std::exp(exponent(j, x) - top);
      sum += e;
      weighted += e * mu_[j];
    }
    return weighted / sum;
  }

  // l' = E[mu], l'' = Var[mu], l''' = E[(mu - E mu)^3] under the posterior
  // weights pi_j(x).  In ratio form, with the sums S_k = sum over the
  // non-zero means of e^(z_j - top) mu_j^k (top their largest exponent) and
  // Z the zero-mean components' share on the same scale:
  //   l' = S1 / (Z + S0),  l'' / l' = S2 / S1 - l',
  //   l''' / l' = S3 / S1 - 3 S2 / (Z + S0) + 2 l'^2,
  // finite where l' underflows (Z >> S0 on the flat stretch).  Meaningful
  // for pllr_increasing() mixtures (then S1 > 0).
  PllrSlopes pllr_slopes(double x) const override {
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < mu_.size(); ++j)
      if (mu_[j] != 0.0) top = std::max(top, exponent(j, x));
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, zero = 0.0;
    for (std::size_t j = 0; j < mu_.size(); ++j) {
      const double e = std::exp(exponent(j, x) - top);
      if (mu_[j] == 0.0) {
        zero += e;
        continue;
      }
      s0 += e;
      s1 += e * mu_[j];
      s2 += e * mu_[j] * mu_[j];
      s3 += e * mu_[j] * mu_[j] * mu_[j];
    }
    const double total = zero + s0, slope = s1 / total;
    return {slope, s2 / s1 - slope, s3 / s1 - 3.0 * s2 / total + 2.0 * slope * slope};
  }

  // The infimum of l over x.  With means all of one sign l is monotone and
  // tends to log(weight at mean 0) (-inf without such a component); with
  // means of both signs it is the convex minimum, where l'(x) = 0.
  double pllr_infimum() const override {
    if (mu_min_ >= 0.0 || mu_max_ <= 0.0) {
      double w0 = 0.0;
      for (std::size_t j = 0; j < mu_.size(); ++j)
        if (mu_[j] == 0.0) w0 += w_[j];
      return w0 > 0.0 ? std::log(w0) : -std::numeric_limits<double>::infinity();
    }
    // means of both signs: l is convex with a minimum where l'(x) = 0
    double lo = -1.0, hi = 1.0;
    while (pllr_slope(lo) > 0.0) lo *= 2.0;
    while (pllr_slope(hi) < 0.0) hi *= 2.0;
    for (int i = 0; i < 200 && hi - lo > 1e-14 * (1.0 + std::fabs(lo)); ++i) {
      const double mid = 0.5 * (lo + hi);
      (pllr_slope(mid) < 0.0 ? lo : hi) = mid;
    }
    return pllr(0.5 * (lo + hi));
  }

  // x with l(x) = v, for a mixture with all means >= 0 (l increasing); -inf
  // for v <= the infimum of l, which l only approaches.  Throws
  // std::domain_error for means of both signs (l is not monotone there).
  double pllr_inverse(double v) const override {
    if (!monotone())
      throw std::domain_error("pllr_inverse needs every mean >= 0 (l is then increasing); " + describe() +
                              " has a negative mean");
    detail::require(!std::isnan(v), "v (a value of the privacy loss) must not be NaN");
    if (!(v > pllr_infimum())) return -std::numeric_limits<double>::infinity();
    // l >= log w_m + mu_m x - mu_m^2 / 2 for the largest mean: an upper end.
    std::size_t m = 0;
    for (std::size_t j = 0; j < mu_.size(); ++j)
      if (mu_[j] > mu_[m]) m = j;
    double hi = (v - log_w_[m] + 0.5 * mu_[m] * mu_[m]) / mu_[m];
    double lo = hi - 1.0;
    for (int i = 0; i < 1100 && pllr(lo) > v; ++i) lo -= std::max(1.0, std::fabs(lo));  // doubles |lo|
    if (!std::isfinite(lo)) return -std::numeric_limits<double>::infinity();
    // Newton from the right on the convex increasing l stays on the right of
    // the root; bisection keeps the bracket.
    double x = hi;
    for (int i = 0; i < 200; ++i) {
      const double f = pllr(x) - v;
      if (f == 0.0) return x;
      (f > 0.0 ? hi : lo) = x;
      const double slope = pllr_slope(x);
      double next = slope > 0.0 ? x - f / slope : 0.5 * (lo + hi);
      if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
      if (std::fabs(next - x) <= 1e-15 * (1.0 + std::fabs(x))) return next;
      x = next;
    }
    return x;
  }

  std::vector<double> breakpoints(double s) const override {
    std::vector<double> b{0.0};
    for (double mu : mu_) {
      b.push_back(mu);
      if (s > 0.0) b.push_back(s * mu);  // mode of the w_j N(mu_j, 1) part when tilted
    }
    if (s < 0.0) {
      // p e^(s l) is log-concave for s < 0 (l convex): its mode solves
      // x = s l'(x), in [s max mu, s min mu].
      double lo = s * mu_max_, hi = s * mu_min_;
      for (int i = 0; i < 80 && hi - lo > 1e-9 * (1.0 + std::fabs(lo)); ++i) {
        const double mid = 0.5 * (lo + hi);
        (mid - s * pllr_slope(mid) < 0.0 ? lo : hi) = mid;
      }
      b.push_back(0.5 * (lo + hi));
    }
    // where one component overtakes the next (sorted by mean): the kinks of
    // the piecewise-linear envelope of l
    std::vector<std::size_t> order(mu_.size());
    for (std::size_t j = 0; j < order.size(); ++j) order[j] = j;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t c) { return mu_[a] < mu_[c]; });
    for (std::size_t i = 0; i + 1 < order.size(); ++i) {
      const std::size_t a = order[i], c = order[i + 1];
      if (mu_[c] == mu_[a]) continue;
      const double x = (log_w_[a] - log_w_[c] + 0.5 * (mu_[c] * mu_[c] - mu_[a] * mu_[a])) / (mu_[c] - mu_[a]);
      if (std::isfinite(x)) b.push_back(x);
    }
    return b;
  }

  bool closed_form(double s, int order, TiltedCumulants* out) const override {
    if (mu_.size() != 1) return false;
    // One component: the plain Gaussian mechanism, K(s) = s(s-1) mu^2 / 2.
    const double m2 = mu_[0] * mu_[0];
    out->s = s;
    out->log_mgf = 0.5 * s * (s - 1.0) * m2;
    out->derivative.fill(0.0);
    out->derivative[1] = (s - 0.5) * m2;
    if (order >= 2) out->derivative[2] = m2;
    out->log_mgf_error = 0.0;
    out->order = order;
    return true;
  }

  std::string describe() const override {
    std::string w = "[", m = "[";
    for (std::size_t j = 0; j < mu_.size(); ++j) {
      w += (j ? ", " : "") + detail::fmt(w_[j]);
      m += (j ? ", " : "") + detail::fmt(mu_[j]);
    }
    return "GaussianMixture(weights=" + w + "], means=" + m + "])";
  }

 private:
  double exponent(std::size_t j, double x) const { return log_w_[j] + mu_[j] * x - 0.5 * mu_[j] * mu_[j]; }

  std::vector<double> w_, mu_, log_w_;
  double mu_min_ = 0.0, mu_max_ = 0.0;
};

// The Poisson-subsampled Laplace mechanism (sensitivity 1, scale b):
//   P = Lap(0, b),   Q = (1 - q) Lap(0, b) + q Lap(1, b),
// with Lap(m, b) of density exp(-|x - m| / b) / (2 b).  b is dp_accounting's
// LaplaceDpEvent(noise_multiplier = b) (noise scale over the L1 sensitivity).
// Without subsampling (q = 1) the PLLR is
//   L(x) = (|x| - |x - 1|) / b  =  -1/b (x <= 0),  (2x - 1)/b (0 < x < 1),  1/b (x >= 1),
// and subsampled l(x) = log(1 - q + q e^(L(x))): constant on x <= 0 and on
// x >= 1 (atoms of the privacy loss, of P-mass 1/2 and e^(-1/b)/2), and
// increasing in between.  Its range is [log(1 - q + q e^(-1/b)), log(1 - q + q e^(1/b))].
class SubsampledLaplace final : public Mechanism {
 public:
  SubsampledLaplace(double b, double q) : b_(b), q_(q) {
    // The noise multiplier's range (the calibration searches b in it too).
    // Below it the loss, up to 1/b nats, left the root searches with empty
    // brackets (b = 1e-300: a Boost "toms748_solve ... out of order" error).
    detail::require(std::isfinite(b) && b >= kSigmaMin && b <= kSigmaMax,
                    "scale (Laplace noise scale b) must be in [" + detail::fmt(kSigmaMin) + ", " +
                        detail::fmt(kSigmaMax) + "], got " + detail::fmt(b) +
                        "; the range of the noise multiplier, outside which the core's root searches are not tested");
    detail::require(std::isfinite(q) && q > 0.0 && q <= 1.0,
                    "q (sampling rate) must be in (0, 1], got " + detail::fmt(q));
  }

  double b() const { return b_; }
  double q() const { return q_; }
  std::optional<double> sampled_weight() const override { return q_; }

  double log_p(double x) const override { return -std::fabs(x) / b_ - std::log(2.0 * b_); }

  // The unsubsampled loss L(x), clamped to [-1/b, 1/b].
  double base_pllr(double x) const { return (std::fabs(x) - std::fabs(x - 1.0)) / b_; }

  double pllr(double x) const override {
    const double z = base_pllr(x);
    if (q_ == 1.0) return z;
    return z < 30.0 ? std::log1p(q_ * std::expm1(z)) : z + std::log(q_) + std::log1p((1.0 - q_) / q_ * std::exp(-z));
  }

  double pllr_infimum() const override { return q_ == 1.0 ? -1.0 / b_ : std::log1p(q_ * std::expm1(-1.0 / b_)); }
  double pllr_supremum() const { return pllr(1.0); }

  std::vector<double> breakpoints(double /*s*/) const override { return {0.0, 0.5, 1.0}; }

  // q = 1: under P tilted by s the loss has atoms at -1/b (weight e^(-s/b) / 2)
  // and +1/b (weight e^((s-1)/b) / 2), and on (-1/b, 1/b) the density
  // e^(-1/(2b)) e^((s - 1/2) u) / 4 (from u = (2x - 1)/b).  All moments are
  // closed forms of these; the tilted cumulants follow from them.
  bool closed_form(double s, int order, TiltedCumulants* out) const override {
    if (q_ != 1.0) return false;
    const double L = 1.0 / b_, c = s - 0.5;
    // Everything is scaled by e^(-top) with top = |c| L - 1/(2b), the largest
    // log-weight, so nothing overflows.
    const double top = std::fabs(c) * L - 0.5 * L;
    std::array<double, 6> raw{};  // raw[j] = e^(-top) E_P[l^j e^(s l)]
    const double a0 = 0.5 * std::exp(-s * L - top), a1 = 0.5 * std::exp((s - 1.0) * L - top);
    const std::array<double, 6> mid = interval_moments(c, L);  // e^(-|c|L) int_{-L}^{L} u^j e^(c u) du
    double pw_lo = 1.0, pw_hi = 1.0;
    for (int j = 0; j <= 5; ++j) {
      raw[j] = a0 * pw_lo + a1 * pw_hi + 0.25 * mid[j];
      pw_lo *= -L;
      pw_hi *= L;
    }
    out->s = s;
    out->order = order;
    const double log_raw = std::log(raw[0]);
    out->log_mgf = top + log_raw;
    // rounding: raw[0] to a few ulps, and the sum (absolute, like any log of
    // a sum near 1, so that counts multiply it: the margin must see it)
    out->log_mgf_error = 8.0 * std::numeric_limits<double>::epsilon() * (1.0 + std::fabs(top) + std::fabs(log_raw));
    out->derivative.fill(0.0);
    const double mean = raw[1] / raw[0];
    // central moments from the raw moments about 0 (binomial expansion)
    std::array<double, 6> cm{};
    for (int k = 0; k <= 5; ++k) {
      double acc = 0.0, binom = 1.0;  // C(k, i)
      for (int i = 0; i <= k; ++i) {
        acc += binom * raw[i] / raw[0] * std::pow(-mean, k - i);
        binom = binom * (k - i) / (i + 1);
      }
      cm[k] = acc;
    }
    cm[1] = 0.0;
    std::array<double, 6> kk{};
    detail::cumulants_from_moments(cm, kk);
    out->derivative[1] = mean;
    for (int j = 2; j <= 5; ++j) out->derivative[j] = kk[j];
    return true;
  }

  std::string describe() const override {
    return "SubsampledLaplace(b=" + detail::fmt(b_) + ", q=" + detail::fmt(q_) + ")";
  }

 private:
  // e^(-|c| L) * integral_{-L}^{L} u^j e^(c u) du for j = 0..5: by the power
  // series of e^(c u) where |c| L is small, else by the recurrence
  // I_j = [u^j e^(cu) / c] - (j / c) I_(j-1), both scaled by e^(-|c| L).
  static std::array<double, 6> interval_moments(double c, double L) {
    std::array<double, 6> I{};
    const double a = std::fabs(c) * L;
    if (a < 8.0) {
      const double scale = std::exp(-a);
      for (int j = 0; j <= 5; ++j) {
        double sum = 0.0, cn = 1.0;  // cn = c^n / n!
        for (int n = 0; n < 60; ++n) {
          const int p = j + n + 1;
          if (p % 2 == 1) sum += cn * 2.0 * std::pow(L, p) / p;  // odd power of u integrates to 0
          cn *= c / (n + 1);
        }
        I[j] = scale * sum;
      }
      return I;
    }
    // scaled boundary terms: e^(cL - |c|L) and e^(-cL - |c|L)
    const double e_hi = std::exp(c * L - a), e_lo = std::exp(-c * L - a);
    double pl = 1.0, pm = 1.0;  // L^j and (-L)^j
    for (int j = 0; j <= 5; ++j) {
      const double boundary = (pl * e_hi - pm * e_lo) / c;
      I[j] = j == 0 ? boundary : boundary - (j / c) * I[j - 1];
      pl *= L;
      pm *= -L;
    }
    return I;
  }

  double b_, q_;
};

}  // namespace edgeworth
