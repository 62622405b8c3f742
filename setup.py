"""Build script: the C++ extension edgeworth._core is configured and built by CMake.

Metadata lives in pyproject.toml; this file only teaches setuptools to hand the
extension to CMakeLists.txt.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        config = "Debug" if self.debug else "Release"
        configure = [
            "cmake",
            str(ROOT),
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={config}",
        ]
        configure += os.environ.get("EDGEWORTH_CMAKE_ARGS", "").split()
        subprocess.run(configure, cwd=build_dir, check=True)
        subprocess.run(["cmake", "--build", ".", "--config", config, "-j", str(os.cpu_count() or 1)],
                       cwd=build_dir, check=True)


setup(ext_modules=[CMakeExtension("edgeworth._core")], cmdclass={"build_ext": CMakeBuild})
