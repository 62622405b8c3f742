// Python bindings: type conversion, shape checks and GIL release only.
// All the mathematics is in the headers beside this file.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "bounds.hpp"
#include "cf_bound.hpp"
#include "cgf.hpp"
#include "expansions.hpp"
#include "inversion.hpp"
#include "mechanisms.hpp"
#include "rare_jump.hpp"
#include "sampled_count.hpp"
#include "saddlepoint.hpp"
#include "edgeworth_bounds.hpp"

namespace py = pybind11;
using namespace edgeworth;

namespace {

MethodSpec make_spec(const std::string& method, int order, const std::string& ordering) {
  MethodSpec m;
  if (method == "certified")
    m.method = Method::Certified;
  else if (method == "edgeworth")
    m.method = Method::Edgeworth;
  else if (method == "tilted")
    m.method = Method::Tilted;
  else
    throw std::invalid_argument("method must be 'certified', 'tilted' or 'edgeworth', got '" + method + "'");
  m.order = order;
  if (ordering == "remove")
    m.orderings = kRemove;
  else if (ordering == "add")
    m.orderings = kAdd;
  else if (ordering == "both")
    m.orderings = kBoth;
  else
    throw std::invalid_argument("ordering must be 'remove', 'add' or 'both', got '" + ordering + "'");
  m.validate();
  return m;
}

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

// The same exception type as e, its message prefixed with `where` (so an array
// call's decline names the element and its inputs; UnreachableTargetError
// stays UnreachableTargetError).
[[noreturn]] void rethrow_at(const std::string& where) {
  try {
    throw;
  } catch (const std::domain_error& e) {
    throw std::domain_error(where + e.what());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where + e.what());
  } catch (const std::length_error& e) {
    throw std::length_error(where + e.what());
  } catch (const std::out_of_range& e) {
    throw std::out_of_range(where + e.what());
  } catch (const std::overflow_error& e) {
    throw std::overflow_error(where + e.what());
  } catch (const std::range_error& e) {
    throw std::range_error(where + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(where + e.what());
  }
  // anything else (bad_alloc, ...) propagates unchanged from the bare throw above
}

// Applies fn element-wise to four equally long 1-d arrays, without the GIL.
// Returns (values, ordering codes 0 = remove / 1 = add, certified flags,
// estimate-method codes: indices into ESTIMATE_METHODS, -1 for none).
// Between elements (every 20 ms at most) it takes the GIL back to let Python handle signals, so
// Ctrl-C stops a long array call at the next element (KeyboardInterrupt).  An
// element that raises gives the same exception type, its message prefixed
// with "element i (name = value, ...): " (i the index in the flattened,
// C-ordered arrays) where there is more than one element.
template <class Fn>
py::tuple map4(const Array& a, const Array& b, const Array& c, const Array& d, const std::array<const char*, 4>& names,
               Fn fn) {
  for (const Array* arr : {&a, &b, &c, &d})
    if (arr->ndim() != 1) throw std::invalid_argument("expected 1-d arrays (broadcast them first)");
  const py::ssize_t n = a.shape(0);
  if (b.shape(0) != n || c.shape(0) != n || d.shape(0) != n)
    throw std::invalid_argument("arrays must have the same length (broadcast them first)");
  std::vector<Answer> out(static_cast<std::size_t>(n));
  bool interrupted = false;
  {
    const double *pa = a.data(), *pb = b.data(), *pc = c.data(), *pd = d.data();
    py::gil_scoped_release release;
    auto last_check = std::chrono::steady_clock::now();
    for (py::ssize_t i = 0; i < n; ++i) {
      // at most every 20 ms: taking the GIL at every element would make the
      // threads of a multi-threaded caller wait on each other
      if (n > 1 && std::chrono::steady_clock::now() - last_check >= std::chrono::milliseconds(20)) {
        last_check = std::chrono::steady_clock::now();
        py::gil_scoped_acquire acquire;
        if (PyErr_CheckSignals() != 0) {  // the handler raised (KeyboardInterrupt): its error stays set
          interrupted = true;
          break;
        }
      }
      try {
        out[i] = fn(pa[i], pb[i], pc[i], pd[i]);
      } catch (const std::exception&) {  // not swallowed: rethrown as it is, its message prefixed with the element
        if (n == 1) throw;
        rethrow_at("element " + std::to_string(i) + " (" + names[0] + " = " + detail::fmt(pa[i]) + ", " + names[1] +
                   " = " + detail::fmt(pb[i]) + ", " + names[2] + " = " + detail::fmt(pc[i]) + ", " + names[3] +
                   " = " + detail::fmt(pd[i]) + "): ");
      }
    }
  }
  if (interrupted) throw py::error_already_set();
  py::array_t<double> values(n);
  py::array_t<std::int8_t> orderings(n);
  py::array_t<bool> certified(n);
  py::array_t<std::int8_t> how(n);
  auto v = values.mutable_unchecked<1>();
  auto h = how.mutable_unchecked<1>();
  auto o = orderings.mutable_unchecked<1>();
  auto cert = certified.mutable_unchecked<1>();
  for (py::ssize_t i = 0; i < n; ++i) {
    v(i) = out[i].value;
    o(i) = static_cast<std::int8_t>(out[i].ordering);
    cert(i) = out[i].certified;
    h(i) = static_cast<std::int8_t>(out[i].estimate_method);
  }
  return py::make_tuple(values, orderings, certified, how);
}

// The raw CGF bindings take the tilt s from the caller; where the CGF cannot
// be evaluated there (the quadrature fails or the integrand overflows, e.g.
// s = 4e306) that is a bad argument, so it becomes a ValueError naming s.
template <class F>
TiltedCumulants cgf_at(double s, const F& f) {
  try {
    py::gil_scoped_release release;
    return f();
  } catch (const std::runtime_error& e) {
    throw py::value_error("s = " + detail::fmt(s) + ": the CGF cannot be evaluated at this tilt (" + e.what() + ")");
  }
}

py::dict tilted_dict(const TiltedCumulants& t) {
  py::dict d;
  d["s"] = t.s;
  d["cgf"] = t.log_mgf;
  d["cgf_error"] = t.log_mgf_error;
  std::vector<double> der(t.derivative.begin() + 1, t.derivative.begin() + 1 + t.order);
  d["derivatives"] = der;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ core of edgeworth: PLLR CGFs, Edgeworth expansions, CGF bounds, inversions.";
  py::register_exception<std::domain_error>(m, "UnreachableTargetError", PyExc_ValueError);

  py::enum_<Ordering>(m, "Ordering").value("remove", Ordering::Remove).value("add", Ordering::Add);

  py::class_<Mechanism, std::shared_ptr<Mechanism>>(m, "Mechanism")
      .def("pllr", &Mechanism::pllr, py::arg("x"), "The PLLR l(x) = log(q(x)/p(x)) (remove ordering).")
      .def("log_p", &Mechanism::log_p, py::arg("x"))
      .def("pllr_infimum", &Mechanism::pllr_infimum, "inf over x of the PLLR (-inf where unbounded below).")
      .def("__repr__", &Mechanism::describe);

  py::class_<SubsampledGaussian, Mechanism, std::shared_ptr<SubsampledGaussian>>(m, "SubsampledGaussian")
      .def(py::init<double, double>(), py::arg("sigma"), py::arg("q"))
      .def_property_readonly("sigma", &SubsampledGaussian::sigma)
      .def_property_readonly("q", &SubsampledGaussian::q)
      .def("pllr_slope", &SubsampledGaussian::pllr_slope, py::arg("x"))
      .def("pllr_inverse", &SubsampledGaussian::pllr_inverse, py::arg("v"));

  py::class_<GaussianMixture, Mechanism, std::shared_ptr<GaussianMixture>>(m, "GaussianMixture")
      .def(py::init<std::vector<double>, std::vector<double>>(), py::arg("weights"), py::arg("means"))
      .def_property_readonly("weights", &GaussianMixture::weights)
      .def_property_readonly("means", &GaussianMixture::means)
      .def("pllr_slope", &GaussianMixture::pllr_slope, py::arg("x"))
      .def("pllr_inverse", &GaussianMixture::pllr_inverse, py::arg("v"));

  py::class_<SubsampledLaplace, Mechanism, std::shared_ptr<SubsampledLaplace>>(m, "SubsampledLaplace")
      .def(py::init<double, double>(), py::arg("b"), py::arg("q"))
      .def_property_readonly("b", &SubsampledLaplace::b)
      .def_property_readonly("q", &SubsampledLaplace::q);

  py::class_<Answer>(m, "Answer")
      .def_readonly("value", &Answer::value)
      .def_property_readonly("ordering", [](const Answer& a) { return std::string(ordering_name(a.ordering)); })
      .def_readonly("certified", &Answer::certified)
      .def_readonly("t", &Answer::t)
      .def_readonly("margin", &Answer::margin)
      .def_property_readonly("source", [](const Answer& a) { return std::string(source_name(a.source)); })
      .def_property_readonly(
          "estimate_method",
          [](const Answer& a) -> py::object {
            if (a.estimate_method == EstimateMethod::None) return py::none();
            return py::str(estimate_method_name(a.estimate_method));
          },
          "method='tilted': which method gave the estimate ('exact_one_step', 'saddle_point', "
          "'conditioned_inversion' or 'characteristic_function'); None otherwise.")
      .def_property_readonly(
          "trace",
          [](const Answer& a) {
            py::list out;
            for (const TraceEntry& e : a.trace) {
              py::dict d;
              d["bound"] = e.bound;
              d["ordering"] = e.ordering;
              d["status"] = e.status;
              d["value"] = e.value;
              d["reason"] = e.reason;
              d["seconds"] = e.seconds;
              out.append(std::move(d));
            }
            return out;
          },
          "Certified answers: how the value was assembled (certified.hpp), one dict per bound tried or skipped "
          "(bound, ordering, status 'answered' / 'declined' / 'skipped', value, reason, seconds); empty for "
          "estimates.")
      .def_property_readonly(
          "calibration",
          [](const Answer& a) {
            py::list out;
            for (const CalibrationStep& s : a.calibration) {
              py::dict d;
              d["sigma"] = s.sigma;
              d["eps"] = s.eps;
              d["meets"] = s.meets;
              d["bounds"] = s.cheap ? "cheap" : "all";
              d["source"] = s.source;
              d["reason"] = s.reason;
              d["seconds"] = s.seconds;
              out.append(std::move(d));
            }
            return out;
          },
          "Noise calibrations: every evaluation in the order made, one dict each (sigma, eps there, meets: eps <= "
          "the target, bounds: 'all' or 'cheap' (certified without the characteristic-function bound, the search's "
          "first phase), source: the bound or estimate method that gave eps or 'declined', reason, seconds); the "
          "value is the least sigma that met the target with all the bounds, and trace is its eps's trace. Empty "
          "for other answers.");

  {
    py::list table;
    for (const CertifiedBound& b : kCertifiedBounds)
      table.append(py::make_tuple(std::string(b.name), std::string(b.orderings), std::string(b.what)));
    m.attr("CERTIFIED_BOUNDS") = table;  // (name, orderings, what), in the order they are tried
    py::list methods;
    for (const char* name : kEstimateMethodNames) methods.append(std::string(name));
    m.attr("ESTIMATE_METHODS") = methods;  // the estimate's methods, in the order they are tried
  }

  py::class_<Composition>(m, "Composition")
      .def(py::init<>())
      .def("add", &Composition::add, py::arg("mechanism"), py::arg("count"))
      .def_property_readonly("steps", &Composition::steps)
      .def("__len__", [](const Composition& c) { return c.segments().size(); })
      .def(
          "tilted",
          [](const Composition& c, double s, int order) {
            return tilted_dict(cgf_at(s, [&] { return c.tilted(s, order); }));
          },
          py::arg("s"), py::arg("order") = 5, "K(s) = sum n_i log E_P[exp(s l_i)] and its derivatives.")
      .def(
          "loss_cgf",
          [](const Composition& c, const std::string& ordering, const std::string& loss, double s, int order) {
            if (ordering != "remove" && ordering != "add")
              throw std::invalid_argument("ordering must be 'remove' or 'add', got '" + ordering + "'");
            if (loss != "x" && loss != "y") throw std::invalid_argument("loss must be 'x' or 'y', got '" + loss + "'");
            return tilted_dict(cgf_at(s, [&] {
              return loss_cgf(c, ordering == "remove" ? Ordering::Remove : Ordering::Add,
                              loss == "x" ? Loss::X : Loss::Y, s, order);
            }));
          },
          py::arg("ordering"), py::arg("loss"), py::arg("s"), py::arg("order") = 5)
      .def("cumulants",
           [](const Composition& c) {
             std::array<LossCumulants, 2> lc;
             {
               py::gil_scoped_release release;
               lc = loss_cumulants(c);
             }
             py::dict d;
             for (int o = 0; o < 2; ++o) {
               py::dict e;
               e["x"] = std::vector<double>(lc[o].x.begin() + 1, lc[o].x.end());
               e["y"] = std::vector<double>(lc[o].y.begin() + 1, lc[o].y.end());
               d[ordering_name(static_cast<Ordering>(o))] = e;
             }
             return d;
           })
      .def(
          "epsilon",
          [](const Composition& c, double delta, const std::string& method, int order, const std::string& ordering,
             const std::string& fail_bound) {
            MethodSpec spec = make_spec(method, order, ordering);
            spec.fail_bound = fail_bound;
            py::gil_scoped_release release;
            return edgeworth::epsilon(c, delta, spec);
          },
          py::arg("delta"), py::arg("method") = "certified", py::arg("order") = 2, py::arg("ordering") = "both",
          py::arg("_fail_bound") = "",
          "_fail_bound (tests only): the certified bound of that name throws RuntimeError when tried.")
      .def(
          "delta",
          [](const Composition& c, double eps, const std::string& method, int order, const std::string& ordering,
             const std::string& fail_bound) {
            MethodSpec spec = make_spec(method, order, ordering);
            spec.fail_bound = fail_bound;
            py::gil_scoped_release release;
            return edgeworth::delta(c, eps, spec);
          },
          py::arg("eps"), py::arg("method") = "certified", py::arg("order") = 2, py::arg("ordering") = "both",
          py::arg("_fail_bound") = "");

  // Vectorised DP-SGD entry points (1-d arrays of equal length).
  m.def(
      "dpsgd_epsilon",
      [](const Array& sigma, const Array& delta, const Array& steps, const Array& q, const std::string& method,
         int order, const std::string& ordering) {
        const MethodSpec spec = make_spec(method, order, ordering);
        return map4(sigma, delta, steps, q, {"sigma", "delta", "steps", "q"}, [&](double s, double d, double n, double qq) {
          return edgeworth::epsilon(dpsgd(s, qq, n), d, spec);
        });
      },
      py::arg("sigma"), py::arg("delta"), py::arg("steps"), py::arg("q"), py::arg("method"), py::arg("order"),
      py::arg("ordering"));
  m.def(
      "dpsgd_delta",
      [](const Array& sigma, const Array& eps, const Array& steps, const Array& q, const std::string& method,
         int order, const std::string& ordering) {
        const MethodSpec spec = make_spec(method, order, ordering);
        return map4(sigma, eps, steps, q, {"sigma", "eps", "steps", "q"}, [&](double s, double e, double n, double qq) {
          return edgeworth::delta(dpsgd(s, qq, n), e, spec);
        });
      },
      py::arg("sigma"), py::arg("eps"), py::arg("steps"), py::arg("q"), py::arg("method"), py::arg("order"),
      py::arg("ordering"));
  m.def(
      "dpsgd_noise_multiplier",
      [](const Array& eps, const Array& delta, const Array& steps, const Array& q, const std::string& method,
         int order, const std::string& ordering) {
        const MethodSpec spec = make_spec(method, order, ordering);
        return map4(eps, delta, steps, q, {"eps", "delta", "steps", "q"}, [&](double e, double d, double n, double qq) {
          return calibrate_sigma(e, d, n, qq, spec);
        });
      },
      py::arg("eps"), py::arg("delta"), py::arg("steps"), py::arg("q"), py::arg("method"), py::arg("order"),
      py::arg("ordering"));
  m.def(
      "dpsgd_calibrate",
      [](double eps, double delta, double steps, double q, const std::string& method, int order,
         const std::string& ordering) {
        const MethodSpec spec = make_spec(method, order, ordering);
        py::gil_scoped_release release;
        return calibrate_sigma(eps, delta, steps, q, spec);
      },
      py::arg("eps"), py::arg("delta"), py::arg("steps"), py::arg("q"), py::arg("method") = "certified",
      py::arg("order") = 2, py::arg("ordering") = "both",
      "One element of dpsgd_noise_multiplier as an Answer (value: sigma), with the calibration's evaluations "
      "(Answer.calibration) and the trace of the certified eps at the sigma returned.");

  // Calibration of a common noise parameter over a composition whose
  // segments scale with it: ("gaussian", [], [], q, n): SubsampledGaussian(sigma, q);
  // ("laplace", [], [], q, n): SubsampledLaplace(b = sigma, q);
  // ("mixture", weights, sensitivities, 1, n): GaussianMixture(weights, sensitivities / sigma).
  using SegmentSpec = std::tuple<std::string, std::vector<double>, std::vector<double>, double, double>;
  m.def(
      "calibrate_noise",
      [](double eps, double delta, const std::vector<SegmentSpec>& segments, const std::string& method, int order,
         const std::string& ordering) {
        const MethodSpec spec = make_spec(method, order, ordering);
        if (segments.empty()) throw std::invalid_argument("segments must not be empty");
        for (const auto& seg : segments) {
          const std::string& kind = std::get<0>(seg);
          if (kind != "gaussian" && kind != "laplace" && kind != "mixture")
            throw std::invalid_argument("segment kind must be 'gaussian', 'laplace' or 'mixture', got '" + kind + "'");
        }
        auto make = [&](double sigma) {
          Composition c;
          for (const auto& [kind, weights, sens, q, count] : segments) {
            if (kind == "gaussian") {
              c.add(std::make_shared<SubsampledGaussian>(sigma, q), count);
            } else if (kind == "laplace") {
              c.add(std::make_shared<SubsampledLaplace>(sigma, q), count);
            } else {
              std::vector<double> means(sens.size());
              for (std::size_t j = 0; j < sens.size(); ++j) means[j] = sens[j] / sigma;
              c.add(std::make_shared<GaussianMixture>(weights, means), count);
            }
          }
          return c;
        };
        make(1.0);  // validates every segment before the search
        py::gil_scoped_release release;
        return calibrate_noise(eps, delta, make, spec, 1.0, 0.5, spec.method == Method::Certified ? 1e-9 : 1e-10);
      },
      py::arg("eps"), py::arg("delta"), py::arg("segments"), py::arg("method") = "certified", py::arg("order") = 2,
      py::arg("ordering") = "both",
      "The smallest noise parameter sigma in [SIGMA_MIN, SIGMA_MAX] whose eps at delta is at most eps, for segments "
      "that scale with sigma (see csrc/bindings.cpp).");

  m.def(
      "edgeworth_sf",
      [](double x, const std::vector<double>& cumulants, int order) {
        if (cumulants.size() < 5) throw std::invalid_argument("cumulants must hold kappa_1..kappa_5");
        std::array<double, 6> k{};
        for (int j = 1; j <= 5; ++j) k[j] = cumulants[j - 1];
        return edgeworth_scaled_sf(x, k, order);
      },
      py::arg("x"), py::arg("cumulants"), py::arg("order"),
      "Edgeworth approximation of P(S > x) from the cumulants kappa_1..kappa_5 of S.");

  m.attr("SIGMA_MIN") = kSigmaMin;
  m.attr("Q_MIN") = kQMin;
  m.attr("STEPS_MAX") = kStepsMax;
  m.attr("SIGMA_MAX") = kSigmaMax;
  m.attr("EPS_MAX") = kEpsMax;

  auto ordering_of = [](const std::string& ordering) {
    detail::require(ordering == "remove" || ordering == "add", "ordering must be 'remove' or 'add', got '" + ordering + "'");
    return ordering == "add" ? Ordering::Add : Ordering::Remove;
  };
  m.def(
      "cf_delta",
      [ordering_of](double sigma, double q, double steps, double eps, const std::string& ordering) -> py::object {
        const Ordering o = ordering_of(ordering);
        std::optional<CfInversion::Value> v;
        {
          py::gil_scoped_release release;
          const Composition c = dpsgd(sigma, q, steps);
          try {
            v = cf_delta(c, o, eps);
          } catch (const std::runtime_error&) {
            // a quadrature that fails inside (sigma 1e3..1e6, one step) is a
            // decline, as in the public API, where the other bounds answer
            v = std::nullopt;
          }
        }
        if (!v) return py::none();
        return py::make_tuple(v->lower, v->upper);
      },
      py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("eps"), py::arg("ordering") = "remove",
      "Certified (lower, upper) on delta(eps) of one ordering by the characteristic-function inversion, or None "
      "where it declines.");
  m.def(
      "cf_epsilon",
      [ordering_of](double sigma, double q, double steps, double delta, const std::string& ordering) -> py::object {
        const Ordering o = ordering_of(ordering);
        std::optional<double> v;
        {
          py::gil_scoped_release release;
          const Composition c = dpsgd(sigma, q, steps);
          const double chernoff = certified_epsilon(c, o, delta).value;
          try {
            v = cf_epsilon(c, o, delta, chernoff);
          } catch (const detail::DeclineSignal&) {
            v = std::nullopt;  // a decline of its numerics (any other error propagates)
          }
        }
        if (!v) return py::none();
        return py::float_(*v);
      },
      py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("delta"), py::arg("ordering") = "remove",
      "Certified upper bound on eps(delta) of one ordering by the characteristic-function inversion, or None.");
  // --- sampled_count ---
  // bound(dpsgd(sigma, q, steps), ordering, x) as None or a float, without the GIL
  auto one_ordering_bound = [ordering_of](auto bound) {
    return [ordering_of, bound](double sigma, double q, double steps, double x, const std::string& ordering) {
      const Ordering o = ordering_of(ordering);
      std::optional<double> v;
      {
        py::gil_scoped_release release;
        v = bound(dpsgd(sigma, q, steps), o, x);
      }
      return v ? py::object(py::float_(*v)) : py::object(py::none());
    };
  };
  m.def("count_delta",
        one_ordering_bound([](const Composition& c, Ordering o, double eps) { return sampled_count_delta(c, o, eps); }),
        py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("eps"), py::arg("ordering") = "remove",
        "Certified upper bound on delta(eps) of one ordering by the sampled-count bound (csrc/sampled_count.hpp), "
        "or None where it is not tried (more than 64 sampled steps expected).");
  m.def("count_epsilon",
        one_ordering_bound(
            [](const Composition& c, Ordering o, double delta) { return sampled_count_epsilon(c, o, delta); }),
        py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("delta"), py::arg("ordering") = "remove",
        "Certified upper bound on eps(delta) of one ordering by the sampled-count bound, or None.");
  m.def("jump_delta",
        one_ordering_bound([](const Composition& c, Ordering o, double eps) {
          return o == Ordering::Remove ? rare_jump_delta(c, eps) : std::optional<double>();
        }),
        py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("eps"), py::arg("ordering") = "remove",
        "Certified upper bound on delta(eps) of the remove ordering by the rare-jump bound (csrc/rare_jump.hpp), "
        "or None where it is not tried (another ordering, or more than 0.3 sampled steps expected).");
  m.def("jump_epsilon",
        one_ordering_bound([](const Composition& c, Ordering o, double delta) {
          return o == Ordering::Remove ? rare_jump_epsilon(c, delta, kEpsMax) : std::optional<double>();
        }),
        py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("delta"), py::arg("ordering") = "remove",
        "Certified upper bound on eps(delta) of the remove ordering by the rare-jump bound, or None.");
  // --- edgeworth_bounds (DGG) ---
  // Certified Edgeworth-accountant bounds (csrc/edgeworth_bounds.hpp).
  {
    auto moments_dict = [](const PllrCentredMoments& mo) {
      py::dict d;
      d["mean"] = mo.mean;
      d["variance"] = mo.variance;
      d["abs1"] = mo.abs1;
      d["abs3"] = mo.abs3;
      d["third"] = mo.third;
      d["fourth"] = mo.fourth;
      d["K3"] = mo.K3();
      d["K3tilde"] = mo.K3tilde();
      d["K4"] = mo.K4();
      d["lambda3"] = mo.lambda3();
      return d;
    };
    auto ordering_dict = [](const EdgeworthBoundOrdering& b) {
      py::dict d;
      d["ordering"] = std::string(ordering_name(b.ordering));
      d["eps_lower"] = b.eps_lower;
      d["eps_upper"] = b.eps_upper;
      d["vacuous_lower"] = b.vacuous_lower;
      d["vacuous_upper"] = b.vacuous_upper;
      d["delta_x"] = b.delta_x;
      d["delta_y"] = b.delta_y;
      d["dgg_eps_x"] = b.dgg_eps_x;
      d["dgg_eps_y"] = b.dgg_eps_y;
      return d;
    };
    m.def(
        "edgeworth_bound",
        [moments_dict, ordering_dict](double sigma, double q, double steps, double delta) {
          EdgeworthBoundResult r;
          {
            py::gil_scoped_release release;
            r = dpsgd_edgeworth_bound(sigma, q, steps, delta);
          }
          py::dict d;
          d["eps_lower"] = r.eps_lower;
          d["eps_upper"] = r.eps_upper;
          d["vacuous_lower"] = r.vacuous_lower;
          d["vacuous_upper"] = r.vacuous_upper;
          d["ordering"] = std::string(ordering_name(r.ordering));
          const auto& rm = r.orderings[static_cast<int>(Ordering::Remove)];
          d["delta_x"] = rm.delta_x;
          d["delta_y"] = rm.delta_y;
          d["remove"] = ordering_dict(rm);
          d["add"] = ordering_dict(r.orderings[static_cast<int>(Ordering::Add)]);
          py::dict mo;
          mo["x"] = moments_dict(r.x);
          mo["y"] = moments_dict(r.y);
          d["moments"] = mo;
          d["steps"] = r.steps;
          d["delta"] = r.delta;
          return d;
        },
        py::arg("sigma"), py::arg("q"), py::arg("steps"), py::arg("delta"),
        "Certified Edgeworth-accountant bounds on eps(delta) (Wang et al. 2206.04236 with the Derumigny-Girard-"
        "Guyonvarch error bound) for `steps` steps of DP-SGD; both orderings and their max.");
    m.def(
        "edgeworth_bound_moments",
        [moments_dict](double sigma, double q) {
          PllrCentredMoments x, y;
          {
            py::gil_scoped_release release;
            const SubsampledGaussian mech(sigma, q);
            x = pllr_centred_moments(mech, 0.0);
            y = pllr_centred_moments(mech, 1.0);
          }
          py::dict d;
          d["x"] = moments_dict(x);
          d["y"] = moments_dict(y);
          return d;
        },
        py::arg("sigma"), py::arg("q"),
        "Per-step centred moments of the PLLR X (under P) and Y (under Q), remove ordering.");
    m.def(
        "dgg_delta_n",
        [](double n, double K3, double K3tilde, double K4, double lambda3, py::object eps) -> py::tuple {
          if (eps.is_none()) {
            const DggBound b = dgg_delta_n_optimized(n, K3, K3tilde, K4, lambda3);
            return py::make_tuple(b.value, b.eps);
          }
          const double e = eps.cast<double>();
          return py::make_tuple(dgg_delta_n(n, K3, K3tilde, K4, lambda3, e), e);
        },
        py::arg("n"), py::arg("K3"), py::arg("K3tilde"), py::arg("K4"), py::arg("lambda3"), py::arg("eps") = py::none(),
        "DGG bound on sup|F_n - Edgeworth_1| for n i.i.d. steps; eps=None optimises eps over (0, 1/3). "
        "Returns (Delta_n, eps).");
  }
  // --- end edgeworth_bounds ---
}
