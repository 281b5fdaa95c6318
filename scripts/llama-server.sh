#!/usr/bin/env bash
# llama.cpp's own batching server (continuous batching, --parallel slots) for the tests and benchmarks, built
# from the llama.cpp sources that the llama-cpp-python sdist vendors, with the same portable CPU flags as
# install.sh (the default -march=native build dies with SIGILL on VMs that report AMX but forbid it).
#   bash scripts/llama-server.sh build   # once; cached in .cache/llama-server/ (~15 min on 2 busy cores)
#   bash scripts/llama-server.sh path    # prints the binary's path, or fails if it is not built
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
DIR=$PWD/.cache/llama-server
BIN=$DIR/$VERSION/bin/llama-server
PY=${PYTHON:-.venv/bin/python}

case "${1:-path}" in
  path)
    [ -x "$BIN" ] || { echo "llama-server is not built: run bash scripts/llama-server.sh build" >&2; exit 1; }
    echo "$BIN"
    ;;
  build)
    if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
    mkdir -p "$DIR/src"
    sdist=$DIR/src/llama_cpp_python-$VERSION.tar.gz
    # --no-binary for this one package only: with :all: pip would build every build dependency from source
    [ -s "$sdist" ] || "$PY" -m pip download -q --no-binary llama-cpp-python --no-deps -d "$DIR/src" "llama-cpp-python==$VERSION"
    tree=$DIR/src/llama_cpp_python-$VERSION
    [ -d "$tree/vendor/llama.cpp/tools/server" ] || tar -xzf "$sdist" -C "$DIR/src"
    cd "$tree/vendor/llama.cpp"
    # Static, so the cached binary needs no LD_LIBRARY_PATH; no curl: models are never downloaded; no prebuilt
    # web UI: the build would fetch an unpinned one from Hugging Face (the tests and benchmarks use the API only).
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
      -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
      -DLLAMA_CURL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
    nice -n 10 cmake --build build --target llama-server -j"${LLAMA_SERVER_JOBS:-2}" >&2  # stdout: the path only
    mkdir -p "$(dirname "$BIN")"
    cp build/bin/llama-server "$BIN.tmp" && mv "$BIN.tmp" "$BIN"  # atomic: a killed build leaves no binary
    "$BIN" --version >/dev/null 2>&1
    echo "$BIN"
    ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
