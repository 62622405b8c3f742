#!/usr/bin/env bash
# Builds the extension edgeworth._core in an instrumented variant, beside a
# copy of the Python package, so that `PYTHONPATH=DEST` runs the package with
# that build and nothing else (the installed package and the source tree are
# left alone).  The extension is one translation unit, so g++ is called
# directly: a CMake configure would cost more than the compile.
#
#   .ci/build_variant.sh asan DEST   AddressSanitizer + UndefinedBehaviorSanitizer,
#                                    every report fatal (-fno-sanitize-recover)
#   .ci/build_variant.sh fuzz DEST   coverage for the fuzzer: g++ -fsanitize-coverage=trace-pc
#                                    on the core, fed to atheris' libFuzzer by
#                                    fuzz/coverage_shim.cpp (see docs/robustness.md)
#
# Needs g++ >= 10 and, in the running Python, numpy, pybind11 and boost-headers.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?usage: build_variant.sh asan|fuzz DEST}
dest=${2:?usage: build_variant.sh asan|fuzz DEST}
py=${PYTHON:-python}

rm -rf "$dest/edgeworth"
mkdir -p "$dest/edgeworth"
cp -r edgeworth/*.py edgeworth/comparison "$dest/edgeworth/"
find "$dest/edgeworth" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +

suffix=$("$py" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
boost=$("$py" -c "import boost_headers; print(boost_headers.get_include())")
# shellcheck disable=SC2207
pybind=($("$py" -m pybind11 --includes))
common=(-std=c++17 -shared -fPIC -pthread -fopenmp-simd -Wall -Wextra -Icsrc -isystem "$boost" "${pybind[@]}" -DBOOST_MATH_STANDALONE)

case "$variant" in
  asan)
    # float-cast-overflow is not part of g++'s -fsanitize=undefined; a double
    # out of an integer's range (steps = 1e300 cast to an int) is exactly the
    # kind of bug the extreme inputs could hit, so it is asked for explicitly.
    g++ "${common[@]}" -O1 -g -fno-omit-frame-pointer \
      -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
      csrc/bindings.cpp -o "$dest/edgeworth/_core$suffix"
    ;;
  fuzz)
    # Only the core is instrumented; the shim that receives the callbacks is
    # compiled without instrumentation (it would otherwise call itself).
    g++ -std=c++17 -O2 -fPIC -c fuzz/coverage_shim.cpp -o "$dest/coverage_shim.o"
    g++ "${common[@]}" -O2 -g -fsanitize-coverage=trace-pc \
      csrc/bindings.cpp "$dest/coverage_shim.o" -o "$dest/edgeworth/_core$suffix"
    ;;
  *)
    echo "unknown variant '$variant' (asan or fuzz)" >&2
    exit 2
    ;;
esac
echo "built $dest/edgeworth/_core$suffix ($variant)"
