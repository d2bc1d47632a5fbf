# sightd build, dependencies and tests.
#
#   make deps    install what the build and the tests need (idempotent, quick when done)
#   make build   bin/sightd
#   make test    the whole test suite (what CI runs)
#   make bench   the Go benchmarks that the README quotes
#   make build ARCH=arm64   bin/linux_arm64/sightd, cross-compiled on amd64
#   make test-arm64         the arithmetic and I/O tests under QEMU as a Pi 4 and a Pi 5
#   make deb [ARCH=arm64]   bin/sightd_<version>_<arch>.deb; make test-deb installs and purges it
#   make test-ha            sightd against a real Home Assistant (make test runs it too)
#   make ha-screenshot      bin/ha-dashboard.png, bin/ha-device.png: Home Assistant showing sightd
#   make readme-pictures    daemon/doc/: the README's pictures, of a synthetic video, with Home Assistant
#   make export-deps        the export toolchain (.venv/bin/sightd-export); make test-export its tests
#   make record-vtest       bin/record-vtest: vtest.avi recorded by sightd camera record
#   make bench-export, make bench-distill   exported and distilled models measured

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# GOHOSTARCH, not GOARCH: a cross build exports GOARCH to its recipes.
HOST_ARCH := $(shell $(GO) env GOHOSTARCH)
ARCH      ?= $(HOST_ARCH)

# Root for apt-get when not already root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Debian packages the build and the tests use.
APT_PACKAGES := libopencv-dev pkg-config mosquitto mosquitto-clients systemd strace

# The TensorFlow Lite C runtime 2.9.0 (with XNNPACK) ships inside this npm package.
# The integrity is the registry's own value for this exact version: a different
# tarball is refused.
TFLITE_NPM       := tfjs-tflite-node@0.0.2
TFLITE_INTEGRITY := sha512-Zed9biOz9lkWsekvPwdEmxXnsjXJnZO8iOV0s2Y20QU15cwiPedzFEBYiGbK7smYpkJpQNNY9SukoKmUi9bk9w==
DEPS_DIR         := $(CURDIR)/third_party
TFLITE_BUNDLED   := $(DEPS_DIR)/tflite
FIXTURES_DIR     := $(DEPS_DIR)/fixtures
OPENCV_DATA      := $(DEPS_DIR)/opencv-data
FACE_NPM         := @mediapipe/face_detection@0.4.1657300184
FACE_INTEGRITY   := sha512-k5aYtTf7av7GwD3C9T4LJB/okHK/uJwFQSOmJ9OHZMlwg7SdYVMolRgDlA962OU7fIBKsrOA7f7BzD2gpzcAKw==

# LiteRT 2.3.0, sightd's runtime: libLiteRt.so (the LiteRT C API, XNNPACK CPU
# kernels) inside Google's ai-edge-litert wheels. pip fetches the wheel alone
# (no Python package is installed); its sha256 is pinned per architecture and a
# different file is refused. The wheel has no headers: quant/tflite/litert
# declares the C API itself.
LITERT_VERSION      := 2.3.0
LITERT_SHA256_amd64 := 1f15078a6725d2357d9de9221664c29afa0545d807559c5f7199ce5e40b96b23
LITERT_SHA256_arm64 := 853fc608f96da87bd5f3458465dfb9abbf18d5ae6b94eceacead407146f175ae
LITERT_PLATFORM_amd64 := manylinux_2_27_x86_64
LITERT_PLATFORM_arm64 := manylinux_2_27_aarch64
LITERT_BUNDLED      := $(DEPS_DIR)/litert
# Downloaded wheels are kept outside the work tree for the next clone.
WHEEL_CACHE         ?= $(HOME)/.cache/sightd/wheels
# LITERT_DIR may point at a user's own LiteRT build laid out as $(LITERT_DIR)/lib/libLiteRt.so.
LITERT_DIR ?= $(LITERT_BUNDLED)/linux_$(ARCH)

# TFLITE_DIR may point at a user's own LiteRT / TensorFlow Lite build laid out as
# $(TFLITE_DIR)/include/tensorflow/lite/c/c_api.h and $(TFLITE_DIR)/lib/libtensorflowlite_c.so.
# By default it is the bundled runtime for the target architecture.
TFLITE_DIR ?= $(TFLITE_BUNDLED)/linux_$(ARCH)
export CGO_ENABLED := 1
export CGO_CFLAGS  := -I$(TFLITE_DIR)/include $(CGO_CFLAGS)
# $ORIGIN/../lib/sightd first: an installed binary finds the runtime that
# `make install` puts beside it. ($$ is make's $; the value reaches the linker
# without a shell, so it takes no quotes.)
export CGO_LDFLAGS := -Wl,-rpath,$$ORIGIN/../lib/sightd -L$(LITERT_DIR)/lib -Wl,-rpath,$(LITERT_DIR)/lib -L$(TFLITE_DIR)/lib -Wl,-rpath,$(TFLITE_DIR)/lib $(CGO_LDFLAGS)

GO_LDFLAGS := -X github.com/sightd/sightd/daemon/version.Version=$(VERSION)

# ---- OpenCV: link only the modules sightd uses -----------------------------
# gocv compiles all its C++ wrappers (highgui, dnn, objdetect, video, calib3d,
# features2d, photo, ...), and Debian's opencv4.pc names all 56 modules; the
# linker's --as-needed (Debian's default) keeps the 11 that the wrappers call,
# and highgui brings Qt 5, dnn protobuf. With every function in its own section
# and --gc-sections, the wrappers sightd never calls are dropped, and it links
# with these four modules alone (gocv's customenv tag: the flags come from
# here, not pkg-config). Listing a module here it does not need would not drop
# it: --as-needed decides before the sections are collected.
# OPENCV_LINK=all links as before (what `make bench-memory` compares against).
OPENCV_MODULES := core imgproc imgcodecs videoio
# Tests link more: camera's MOG2 comparison (video), the encoder's check
# against dnn.BlobFromImage (dnn); video needs calib3d, calib3d features2d and
# flann on the command line (ld: "DSO missing from command line").
OPENCV_TEST_MODULES := video dnn calib3d features2d flann
OPENCV_LINK ?= used
ifeq ($(OPENCV_LINK),used)
GO_TAGS := -tags customenv
export CGO_CFLAGS   += -ffunction-sections -fdata-sections
export CGO_CXXFLAGS := --std=c++11 -ffunction-sections -fdata-sections $(CGO_CXXFLAGS)
OPENCV_LDFLAGS := -Wl,--gc-sections $(addprefix -lopencv_,$(OPENCV_MODULES))
OPENCV_TEST_LDFLAGS := $(addprefix -lopencv_,$(OPENCV_TEST_MODULES))
else ifneq ($(OPENCV_LINK),all)
$(error OPENCV_LINK=$(OPENCV_LINK): want used or all)
endif

# ---- cross build: ARCH=arm64 on an amd64 machine ---------------------------
# A native build (amd64, or arm64 on a Pi) writes bin/sightd; a cross build
# bin/linux_$(ARCH)/sightd.
# Debian 12 cannot install the arm64 OpenCV beside the amd64 one (libgdal32 and
# other dependencies are not co-installable), so the arm64 libraries go into a
# private sysroot unpacked from the arm64 .debs (deps-cross); the machine's own
# packages are left alone.
CROSS_SYSROOT := $(DEPS_DIR)/sysroot-arm64
# Where the arm64 libraries lie on the target: the multiarch folders, /usr/lib
# (libraries not made for multiarch: armadillo, hdf4, ogdi, the reason for the
# sysroot) and the BLAS/LAPACK folders that Debian's alternatives point at.
CROSS_GUEST_LIBDIRS := /lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu:/usr/lib:/usr/lib/aarch64-linux-gnu/blas:/usr/lib/aarch64-linux-gnu/lapack
CROSS_LIBDIRS := $(subst :,:$(CROSS_SYSROOT),$(CROSS_SYSROOT)$(CROSS_GUEST_LIBDIRS))
# The OpenCV modules gocv links (as in `objdump -p bin/sightd` on amd64); the
# linker drops any that the code does not use.
CROSS_OPENCV_MODULES := core imgproc imgcodecs videoio highgui video objdetect calib3d features2d dnn photo
ifeq ($(ARCH),$(HOST_ARCH))
SIGHTD_BIN ?= bin/sightd
CROSS_DEPS :=
CROSS_PREFIX :=
ifeq ($(OPENCV_LINK),used)
export CGO_CPPFLAGS := $(shell pkg-config --cflags-only-I opencv4) $(CGO_CPPFLAGS)
CGO_LDFLAGS += $(OPENCV_LDFLAGS)
endif
else ifeq ($(ARCH)-$(HOST_ARCH),arm64-amd64)
SIGHTD_BIN := bin/linux_arm64/sightd
CROSS_DEPS := deps-cross
CROSS_PREFIX := aarch64-linux-gnu-
export GOARCH := arm64
export CC     := aarch64-linux-gnu-gcc
export CXX    := aarch64-linux-gnu-g++
# gocv's customenv tag: no pkg-config (opencv4.pc names every module, whose
# whole dependency tree the sysroot would then need); the flags are given here.
GO_TAGS := -tags customenv
export CGO_CPPFLAGS := -I$(CROSS_SYSROOT)/usr/include/opencv4 -I$(CROSS_SYSROOT)/usr/include/aarch64-linux-gnu/opencv4 $(CGO_CPPFLAGS)
export CGO_CXXFLAGS := $(if $(filter used,$(OPENCV_LINK)),,--std=c++11) $(CGO_CXXFLAGS)
CGO_LDFLAGS += -L$(CROSS_SYSROOT)/usr/lib/aarch64-linux-gnu -Wl,-rpath-link,$(CROSS_LIBDIRS) \
  $(if $(OPENCV_LDFLAGS),$(OPENCV_LDFLAGS),$(addprefix -lopencv_,$(CROSS_OPENCV_MODULES)))
else
$(error ARCH=$(ARCH) on $(HOST_ARCH): only native builds and arm64 on amd64 are supported)
endif

.PHONY: deps deps-apt deps-litert deps-tflite deps-fixtures deps-go demo-bundle bench-bundle bench-video bench-daemon bench-memory build test bench fmt generate run clean

deps: deps-apt deps-litert deps-tflite deps-fixtures deps-go

deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: Debian packages present"; fi

# npm-fetch PACKAGE@VERSION INTEGRITY DIR: npm pack into DIR/x, refusing a tarball
# whose sha512 is not the pinned registry integrity.
define npm-fetch
	@command -v npm >/dev/null || { echo "deps: npm is needed to fetch $(1)" >&2; exit 1; }
	rm -rf "$(3)" && mkdir -p "$(3)/x"
	cd "$(3)" && npm pack --silent "$(1)" >/dev/null
	@tgz=$$(ls "$(3)"/*.tgz); \
	got="sha512-$$(openssl dgst -sha512 -binary "$$tgz" | base64 -w0)"; \
	if [ "$$got" != "$(2)" ]; then echo "deps: $(1) integrity mismatch: got $$got" >&2; exit 1; fi; \
	tar -xzf "$$tgz" -C "$(3)/x"
endef

# Unpacks include/ and lib/ for amd64 and arm64 from the verified npm tarball.
deps-tflite: $(TFLITE_BUNDLED)/.stamp
	@test -f "$(TFLITE_DIR)/include/tensorflow/lite/c/c_api.h" || { echo "TFLITE_DIR=$(TFLITE_DIR): no include/tensorflow/lite/c/c_api.h" >&2; exit 1; }
	@test -f "$(TFLITE_DIR)/lib/libtensorflowlite_c.so" || { echo "TFLITE_DIR=$(TFLITE_DIR): no lib/libtensorflowlite_c.so" >&2; exit 1; }
	@echo "deps: TensorFlow Lite C runtime in $(TFLITE_DIR)"

$(TFLITE_BUNDLED)/.stamp:
	$(call npm-fetch,$(TFLITE_NPM),$(TFLITE_INTEGRITY),$(DEPS_DIR)/npm-tflite)
	rm -rf "$(TFLITE_BUNDLED)"
	for a in amd64 arm64; do \
	  mkdir -p "$(TFLITE_BUNDLED)/linux_$$a/lib"; \
	  cp -r "$(DEPS_DIR)/npm-tflite/x/package/cc_deps/include" "$(TFLITE_BUNDLED)/linux_$$a/include"; \
	  cp "$(DEPS_DIR)"/npm-tflite/x/package/cc_deps/linux_$$a/*.so "$(TFLITE_BUNDLED)/linux_$$a/lib/"; \
	done
	rm -rf "$(DEPS_DIR)/npm-tflite"
	touch $@

# Unpacks libLiteRt.so for amd64 and arm64 from the verified wheels.
deps-litert: $(LITERT_BUNDLED)/.stamp-$(LITERT_VERSION)
	@test -f "$(LITERT_DIR)/lib/libLiteRt.so" || { echo "LITERT_DIR=$(LITERT_DIR): no lib/libLiteRt.so" >&2; exit 1; }
	@echo "deps: LiteRT $(LITERT_VERSION) in $(LITERT_DIR)"

$(LITERT_BUNDLED)/.stamp-$(LITERT_VERSION):
	@command -v pip3 >/dev/null || command -v pip >/dev/null || { echo "deps: pip is needed to fetch ai-edge-litert (apt-get install python3-pip)" >&2; exit 1; }
	rm -rf "$(LITERT_BUNDLED)" && mkdir -p "$(WHEEL_CACHE)"
	@set -e; for a in amd64 arm64; do \
	  case $$a in amd64) plat=$(LITERT_PLATFORM_amd64); sum=$(LITERT_SHA256_amd64);; arm64) plat=$(LITERT_PLATFORM_arm64); sum=$(LITERT_SHA256_arm64);; esac; \
	  whl=$$(ls "$(WHEEL_CACHE)"/ai_edge_litert-$(LITERT_VERSION)-*-$$plat.whl 2>/dev/null | head -1 || true); \
	  if [ -z "$$whl" ] || ! echo "$$sum  $$whl" | sha256sum -c --quiet - 2>/dev/null; then \
	    rm -f "$(WHEEL_CACHE)"/ai_edge_litert-$(LITERT_VERSION)-*-$$plat.whl; \
	    echo "deps: pip download ai-edge-litert==$(LITERT_VERSION) ($$plat)"; \
	    $$(command -v pip3 || command -v pip) download -q --no-deps --only-binary=:all: --python-version 3.11 \
	      --platform $$plat -d "$(WHEEL_CACHE)" ai-edge-litert==$(LITERT_VERSION); \
	    whl=$$(ls "$(WHEEL_CACHE)"/ai_edge_litert-$(LITERT_VERSION)-*-$$plat.whl); \
	  fi; \
	  if ! echo "$$sum  $$whl" | sha256sum -c --quiet -; then echo "deps: $$whl: sha256 mismatch, want $$sum" >&2; exit 1; fi; \
	  mkdir -p "$(LITERT_BUNDLED)/linux_$$a/lib"; \
	  unzip -q -o -j "$$whl" ai_edge_litert/libLiteRt.so -d "$(LITERT_BUNDLED)/linux_$$a/lib"; \
	done
	touch $@

# Test fixtures nobody here wrote: MediaPipe's float face detector (a foreign
# .tflite for the binding's tests).
deps-fixtures: $(FIXTURES_DIR)/face_detection_short_range.tflite $(OPENCV_DATA)/.stamp

$(FIXTURES_DIR)/face_detection_short_range.tflite:
	$(call npm-fetch,$(FACE_NPM),$(FACE_INTEGRITY),$(DEPS_DIR)/npm-face)
	mkdir -p "$(FIXTURES_DIR)"
	cp "$(DEPS_DIR)/npm-face/x/package/face_detection_short_range.tflite" $@
	rm -rf "$(DEPS_DIR)/npm-face"

# Debian's opencv-doc ships real photos and a street video (vtest.avi); only its
# examples/data folder is unpacked (22 MB of the package's 270 MB).
$(OPENCV_DATA)/.stamp:
	rm -rf "$(DEPS_DIR)/opencv-doc" "$(OPENCV_DATA)" && mkdir -p "$(DEPS_DIR)/opencv-doc"
	cd "$(DEPS_DIR)/opencv-doc" && { apt-get download opencv-doc 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download opencv-doc; }; }
	dpkg-deb --fsys-tarfile "$(DEPS_DIR)"/opencv-doc/opencv-doc_*.deb | \
	  tar -x -C "$(DEPS_DIR)/opencv-doc" --wildcards './usr/share/doc/opencv-doc/examples/data/*'
	mv "$(DEPS_DIR)/opencv-doc/usr/share/doc/opencv-doc/examples/data" "$(OPENCV_DATA)"
	rm -rf "$(DEPS_DIR)/opencv-doc"
	touch $@

deps-go:
	$(GO) mod download

# The cross build's tools and the arm64 sysroot (see ARCH=arm64 above).
# Debian packages: the cross compiler and qemu-aarch64-static (both co-install
# with the amd64 system). The arm64 .debs stay in CROSS_CACHE, outside the work
# tree, for the next clone on this machine.
CROSS_APT_PACKAGES := crossbuild-essential-arm64 qemu-user-static
CROSS_CACHE ?= $(HOME)/.cache/sightd/arm64-debs
# apt for arm64 as on an empty system: the whole dependency tree is fetched,
# whatever the machine itself has installed.
CROSS_APT := apt-get -q -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
  -o Dir::State::status=$(CROSS_CACHE)/empty-status -o Dir::Cache::archives=$(CROSS_CACHE) \
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root

.PHONY: deps-cross

deps-cross: $(CROSS_SYSROOT)/.stamp

$(CROSS_SYSROOT)/.stamp:
	@if ! dpkg --print-foreign-architectures | grep -qx arm64; then \
	  echo "deps-cross: adding the arm64 architecture to dpkg"; $(SUDO) dpkg --add-architecture arm64; \
	fi
	@missing=""; \
	for p in $(CROSS_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] || ! apt-cache show libopencv-core406:arm64 >/dev/null 2>&1; then \
	  echo "deps-cross: installing$$missing (and the arm64 package lists)"; \
	  $(SUDO) apt-get update -qq; \
	  [ -z "$$missing" ] || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps-cross: cross compiler and qemu present"; fi
	mkdir -p "$(CROSS_CACHE)/partial" && : > "$(CROSS_CACHE)/empty-status"
	@# The runtime libraries with every dependency, then the modules' -dev
	@# packages alone (headers and libopencv_*.so links).
	$(CROSS_APT) install -y -d --no-install-recommends $(foreach m,$(CROSS_OPENCV_MODULES),libopencv-$(m)406) >/dev/null
	@# The file names from the simulated install ("Inst NAME (VERSION ... [ARCH])");
	@# an epoch's colon is %3a in a .deb's name.
	$(CROSS_APT) install -s --no-install-recommends $(foreach m,$(CROSS_OPENCV_MODULES),libopencv-$(m)406) \
	  | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*\[\([a-z0-9]*\)\]).*$$/\1_\2_\3.deb/p' | sed 's/:/%3a/' > "$(CROSS_CACHE)/runtime.list"
	cd "$(CROSS_CACHE)" && apt-get download -q -o APT::Sandbox::User=root $(foreach m,$(CROSS_OPENCV_MODULES) flann ml stitching,libopencv-$(m)-dev:arm64) >/dev/null
	rm -rf "$(CROSS_SYSROOT)" && mkdir -p "$(CROSS_SYSROOT)"
	@n=0; for f in $$(cat "$(CROSS_CACHE)/runtime.list") $$(cd "$(CROSS_CACHE)" && ls libopencv-*-dev_*_arm64.deb); do \
	  dpkg-deb -x "$(CROSS_CACHE)/$$f" "$(CROSS_SYSROOT)"; n=$$((n+1)); \
	done; echo "deps-cross: $$n arm64 packages unpacked into $(CROSS_SYSROOT)"
	touch $@

build: deps-litert deps-tflite $(CROSS_DEPS)
	$(GO) build $(GO_TAGS) -trimpath -ldflags '$(GO_LDFLAGS)' -o $(SIGHTD_BIN) ./daemon

# A small real model bundle generated by quant/modelgen/demo (never downloaded).
demo-bundle: deps-litert deps-tflite
	rm -rf bin/demo-bundle bin/demo-bundle.tar.gz
	$(GO) run ./quant/modelgen/demo/cmd/demo-bundle -o bin/demo-bundle -tar bin/demo-bundle.tar.gz

# The benchmark bundle (MobileNetV2-like int8 image tower, 512-d) and a
# 1280x720 MJPG street video, for `sightd bench`.
bench-bundle: deps-litert deps-tflite
	rm -rf bin/bench-bundle
	$(GO) run ./quant/modelgen/demo/cmd/demo-bundle -bench -o bin/bench-bundle

bench-video: deps-fixtures
	$(GO) run ./camera/cmd/rescale -i $(OPENCV_DATA)/vtest.avi -o bin/street-720p.avi -width 1280 -height 720

# sightd bench on the benchmark bundle and the 1280x720 video.
bench-daemon: build bench-bundle bench-video
	bin/sightd bench --bundle bin/bench-bundle --source bin/street-720p.avi --frames 300

# Memory as a user counts it, before and after linking only the OpenCV modules
# sightd uses: bin/sightd-opencv-all (OPENCV_LINK=all) against bin/sightd,
# `sightd version` and `sightd bench` MEMORY_RUNS times each, interleaved;
# medians (daemon/procstat/cmd/memtable). sync first: pages of a binary just
# written count as private dirty until the kernel writes them back.
MEMORY_RUNS ?= 5
MEMORY_FRAMES ?= 300
bench-memory: build bench-bundle bench-video
	@# Without this make's CGO_* flags in the environment: the child makes its own.
	env -u CGO_CFLAGS -u CGO_CPPFLAGS -u CGO_CXXFLAGS -u CGO_LDFLAGS \
	  $(MAKE) --no-print-directory OPENCV_LINK=all SIGHTD_BIN=bin/sightd-opencv-all build
	sync
	$(GO) run ./daemon/procstat/cmd/memtable -runs $(MEMORY_RUNS) -frames $(MEMORY_FRAMES) -bundle bin/bench-bundle -source bin/street-720p.avi \
	  bin/sightd-opencv-all $(SIGHTD_BIN)

# bin/record-vtest: a data set recorded from the street video vtest.avi by
# `sightd camera record` (200 frames, at most one per 0.3 s of video), for
# the distillation tests and benchmark. Made once; remade when the video or
# the recording code changes. The stamp is written last: a run that failed
# half way is done again.
RECORD_VTEST      := bin/record-vtest
RECORD_VTEST_ARGS := --frames 200 --every 0.3s
.PHONY: record-vtest
record-vtest: $(RECORD_VTEST)/.stamp

$(RECORD_VTEST)/.stamp: $(OPENCV_DATA)/.stamp daemon/record_cmd.go daemon/record/manifest.go camera/gate.go camera/regions.go | build
	rm -rf $(RECORD_VTEST)
	$(SIGHTD_BIN) camera record --source $(OPENCV_DATA)/vtest.avi $(RECORD_VTEST_ARGS) --out $(RECORD_VTEST)
	touch $@

# The README's test command. Installs what it needs first. With
# SIGHTD_HA_VENV set, daemon's TestHomeAssistant runs against a real Home
# Assistant (see test-ha) instead of skipping.
test: deps test-export ha-deps
	$(GO) vet $(GO_TAGS) ./...
	SIGHTD_HA_VENV=$(HA_VENV) $(GO) test $(GO_TAGS) -count=1 -timeout 20m ./...

# The tests link the modules of OPENCV_TEST_MODULES too.
test test-stress bench test-arm64-run test-ha ha-screenshot readme-pictures: CGO_LDFLAGS += $(OPENCV_TEST_LDFLAGS)

# The timing-sensitive packages STRESS_COUNT times over while busy loops keep
# every core loaded: a test that reads a counter which can lag, or sleeps
# instead of waiting for a condition, fails here first. Not part of `test`.
STRESS_COUNT ?= 5
.PHONY: test-stress
test-stress: deps
	@pids=""; for i in $$(seq $$(nproc)); do sh -c 'while :; do :; done' & pids="$$pids $$!"; done; \
	trap 'kill $$pids' EXIT; \
	echo "test-stress: $$(nproc) busy loops ($$pids), -count=$(STRESS_COUNT)"; \
	$(GO) test $(GO_TAGS) -count=$(STRESS_COUNT) -timeout 90m ./daemon/... ./camera ./ota

# ---- arm64 tests under QEMU -------------------------------------------------
# The packages with arithmetic and I/O, cross-compiled and run by
# qemu-aarch64-static as a Raspberry Pi 4 (cortex-a72: ARMv8.0, no dot-product
# instructions) and a Pi 5 (cortex-a76), through .ci/qemu-exec, which shows
# LiteRT the board's /proc/cpuinfo (root: a private mount namespace). No
# benchmarks: timings under QEMU mean nothing.
ARM64_TEST_PKGS  := ./quant ./quant/kernel ./quant/tflite ./quant/tflite/litert ./quant/tokenizer ./quant/bundle \
  ./quant/encoder ./quant/modelgen/... ./camera ./store
ARM64_QEMU_CPUS  := cortex-a72 cortex-a76
# -short: leaves out the 300 M MAC MobileNet run and the calibration images
# (minutes under QEMU); every package still runs real models.
ARM64_TEST_FLAGS ?= -short
BINFMT := /proc/sys/fs/binfmt_misc

.PHONY: test-arm64 test-arm64-run

test-arm64: arm64-export-bundle
	$(MAKE) --no-print-directory ARCH=arm64 test-arm64-run

# One bundle from the export toolchain for test-arm64: the tiny ViT config of
# quant/export's tests with spread random weights, int8, and open_clip's
# PyTorch vectors for a few real photos and texts (sightd-export reference).
# quant/encoder's TestExportedBundles (the probes) and TestExportedParity then
# run it on LiteRT arm64 under QEMU. Cached under bin/ until the toolchain,
# its locks or the config change (about 2 minutes to make on 2 quiet cores).
ARM64_EXPORT_DIR    := $(CURDIR)/bin/arm64-export
ARM64_EXPORT_CONFIG  = $(EXPORT_DIR)/tests/data/sightd-test-vit.json
ARM64_EXPORT_PHOTOS := apple.jpg orange.jpg butterfly.jpg baboon.jpg board.jpg messi5.jpg
ARM64_EXPORT_TEXTS  := "a red apple" "an orange" "a butterfly on a flower" "a monkey's face" "a chessboard" "a football player"
ARM64_EXPORT_HASH    = $(shell cat $(EXPORT_LOCKS) $(ARM64_EXPORT_CONFIG) $(EXPORT_DIR)/sightd_export/*.py | sha256sum | cut -c1-16)
ARM64_EXPORT_ENV     = SIGHTD_EXPORTED_BUNDLES=$(ARM64_EXPORT_DIR)/bundle SIGHTD_EXPORTED_REFERENCE=$(ARM64_EXPORT_DIR)/reference.json

.PHONY: arm64-export-bundle
arm64-export-bundle: export-deps deps-fixtures
	@d="$(ARM64_EXPORT_DIR)"; stamp="$$d/.stamp-$(ARM64_EXPORT_HASH)"; \
	if [ ! -f "$$stamp" ]; then \
	  start=$$(date +%s); rm -rf "$$d"; mkdir -p "$$d/calib"; \
	  for p in $(ARM64_EXPORT_PHOTOS); do ln -s "$(OPENCV_DATA)/$$p" "$$d/calib/$$p"; done; \
	  x="$(EXPORT_VENV)/bin/sightd-export"; cfg="$(CURDIR)/$(ARM64_EXPORT_CONFIG)"; \
	  "$$x" random-checkpoint --model-config "$$cfg" --seed 0 --out "$$d/checkpoint.pt" >"$$d/log" 2>&1; \
	  "$$x" export --model-config "$$cfg" --pretrained "$$d/checkpoint.pt" --precision int8 \
	    --calib "$$d/calib" --out "$$d/bundle" >>"$$d/log" 2>&1 || { tail -20 "$$d/log" >&2; exit 1; }; \
	  ref=(); for p in $(ARM64_EXPORT_PHOTOS); do ref+=(--image "$(OPENCV_DATA)/$$p"); done; \
	  for t in $(ARM64_EXPORT_TEXTS); do ref+=(--text "$$t"); done; \
	  "$$x" reference --model-config "$$cfg" --pretrained "$$d/checkpoint.pt" --out "$$d/reference.json" "$${ref[@]}" \
	    >>"$$d/log" 2>&1 || { tail -20 "$$d/log" >&2; exit 1; }; \
	  touch "$$stamp"; echo "arm64-export-bundle: $$d/bundle made in $$(( $$(date +%s) - start ))s"; \
	fi

# QEMU_LD_PREFIX: the arm64 loader and libraries come from the sysroot; the
# binfmt_misc entry lets a test re-execute its own arm64 binary (store's crash
# test), as Debian registers it on a machine that runs systemd-binfmt.
test-arm64-run: deps-litert deps-tflite deps-fixtures $(CROSS_DEPS)
	@test "$(ARCH)-$(HOST_ARCH)" = arm64-amd64 || { echo "test-arm64: run it as 'make test-arm64' on amd64" >&2; exit 1; }
	@test -f "$(ARM64_EXPORT_DIR)/bundle/manifest.json" -a -f "$(ARM64_EXPORT_DIR)/reference.json" || { \
	  echo "test-arm64: no exported bundle in $(ARM64_EXPORT_DIR) (make arm64-export-bundle; make test-arm64 makes it)" >&2; exit 1; }
	@if [ ! -e $(BINFMT)/qemu-aarch64 ]; then \
	  mountpoint -q $(BINFMT) || $(SUDO) mount -t binfmt_misc binfmt_misc $(BINFMT) || true; \
	  grep -h '^:qemu-aarch64:' /usr/lib/binfmt.d/qemu-aarch64.conf | $(SUDO) tee $(BINFMT)/register >/dev/null || true; \
	fi
	@noexec="TestFFmpegCrashEndsOnlyItsWorker"; \
	echo "test-arm64: WARNING: NOT RUN under QEMU: camera TestFFmpegCrashEndsOnlyItsWorker (it needs FFmpeg's scaler to crash on the mixed-size stream, which Debian's arm64 FFmpeg under QEMU does not: it keeps refusing the frames; the amd64 run checks it)" >&2; \
	if [ ! -e $(BINFMT)/qemu-aarch64 ]; then \
	  noexec="$$noexec|TestCrashKeepsConfirmedWrites"; \
	  echo "test-arm64: WARNING: NOT RUN under QEMU: store TestCrashKeepsConfirmedWrites (it re-executes its own arm64 binary and binfmt_misc is not available here)" >&2; \
	fi; \
	failed=""; \
	for cpu in $(ARM64_QEMU_CPUS); do \
	  echo "test-arm64: QEMU_CPU=$$cpu$${noexec:+ (NOT RUN: $$noexec, see the warning above)}"; start=$$(date +%s); \
	  $(ARM64_EXPORT_ENV) $(GO) test $(GO_TAGS) -count=1 -timeout 20m $(ARM64_TEST_FLAGS) $${noexec:+-skip "^($$noexec)\$$"} \
	    -exec "env QEMU_LD_PREFIX=$(CROSS_SYSROOT) LD_LIBRARY_PATH=$(CROSS_GUEST_LIBDIRS) $(CURDIR)/.ci/qemu-exec $$cpu" \
	    $(ARM64_TEST_PKGS) || failed="$$failed $$cpu"; \
	  echo "test-arm64: QEMU_CPU=$$cpu took $$(( $$(date +%s) - start ))s"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-arm64: FAILED on$$failed" >&2; exit 1; fi

bench: deps
	$(GO) test $(GO_TAGS) -run '^$$' -bench . -benchmem ./quant/... ./camera/...

# LiteRT and TensorFlow Lite 2.9 side by side in one run: the benchmark
# encoder (MobileNetV2-like, 224x224, 300 M MACs) in float32 and int8, 1 and 2
# threads, each configuration BENCH_COUNT times; prints the median ms per
# invoke and the spread (min-max).
BENCH_COUNT ?= 5
.PHONY: bench-runtimes
bench-runtimes: deps
	$(GO) test -run '^$$' -bench '^BenchmarkInvoke$$' -benchtime 40x -count $(BENCH_COUNT) ./quant/tflite/ | tee bin/bench-runtimes.txt | \
	  awk '/^BenchmarkInvoke\// { n=$$1; sub(/-[0-9]+$$/, "", n); v[n]=v[n] " " $$3/1e6 } \
	    END { printf "%-50s %9s %17s\n", "benchmark", "median ms", "spread ms"; \
	      for (n in v) { k=split(substr(v[n],2), a, " "); \
	        for (i=2; i<=k; i++) { x=a[i]+0; for (j=i-1; j>=1 && a[j]+0>x; j--) a[j+1]=a[j]; a[j+1]=x } \
	        printf "%-50s %9.2f %8.2f-%-8.2f\n", n, (k%2 ? a[(k+1)/2] : (a[k/2]+a[k/2+1])/2), a[1], a[k] } }' | sort

# Regenerates the flatbuffers code of quant/modelgen (checked in; needs flatc).
generate:
	@command -v flatc >/dev/null || $(SUDO) apt-get install -y -qq flatbuffers-compiler
	$(GO) generate ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The first run: the demo bundle, a street video in a loop, two demo rules,
# the local API on 127.0.0.1:8080.
run: deps build demo-bundle
	bin/sightd run -c daemon/config/demo.yml

clean:
	rm -rf bin

# ---- install / uninstall -------------------------------------------------
# The installed layout. The unit's ExecStart (/usr/local/bin/sightd) and the
# binary's rpath ($ORIGIN/../lib/sightd) depend on it, so it has no PREFIX.
BINDIR  := /usr/local/bin
LIBDIR  := /usr/local/lib/sightd
UNITDIR := /usr/local/lib/systemd/system
CONFDIR := /etc/sightd
# Root for the system itself; a DESTDIR (a package's staging tree) needs none.
ISUDO   := $(if $(DESTDIR),,$(SUDO))

.PHONY: install uninstall

# make build && sudo make install, or make install (it asks sudo).
install: build
	$(ISUDO) install -D -m 0755 bin/sightd "$(DESTDIR)$(BINDIR)/sightd"
	$(ISUDO) install -d -m 0755 "$(DESTDIR)$(LIBDIR)"
	$(ISUDO) install -m 0644 "$(LITERT_DIR)"/lib/libLiteRt.so "$(TFLITE_DIR)"/lib/*.so "$(DESTDIR)$(LIBDIR)/"
	$(ISUDO) install -D -m 0644 systemd/sightd.service "$(DESTDIR)$(UNITDIR)/sightd.service"
	@if [ -z "$(DESTDIR)" ] && ! getent passwd sightd >/dev/null; then \
	  echo "install: creating the system user sightd (groups sightd, video)"; \
	  $(ISUDO) useradd --system --user-group --groups video --home-dir /var/lib/sightd \
	    --no-create-home --shell /usr/sbin/nologin sightd; \
	fi
	$(if $(DESTDIR),,$(ISUDO) install -d -o sightd -g sightd -m 0750 /var/lib/sightd)
	$(ISUDO) install -d -m 0755 "$(DESTDIR)$(CONFDIR)"
	@if [ -e "$(DESTDIR)$(CONFDIR)/sightd.yml" ]; then \
	  echo "install: $(CONFDIR)/sightd.yml exists; the example is not installed"; \
	else \
	  $(ISUDO) install $(if $(DESTDIR),-m 0644,-m 0640 -g sightd) daemon/config/sightd.example.yml "$(DESTDIR)$(CONFDIR)/sightd.yml"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then $(ISUDO) systemctl daemon-reload; fi
	@echo "install: done; edit $(CONFDIR)/sightd.yml, then: systemctl enable --now sightd"

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  $(ISUDO) systemctl disable --now sightd.service 2>/dev/null || true; \
	fi
	$(ISUDO) rm -f "$(DESTDIR)$(BINDIR)/sightd" "$(DESTDIR)$(UNITDIR)/sightd.service"
	$(ISUDO) rm -rf "$(DESTDIR)$(LIBDIR)"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then $(ISUDO) systemctl daemon-reload; fi
	@echo "uninstall: kept $(CONFDIR) (configuration), /var/lib/sightd (database, models, snapshots)"
	@echo "uninstall: and the user sightd; remove them by hand if you want them gone"

# ---- Debian package --------------------------------------------------------
# make deb [ARCH=arm64]: bin/sightd_<version>_<arch>.deb (systemd/debian/).
# make test-deb: builds the host's .deb, inspects it, runs lintian, installs,
# removes and purges it on this machine (systemd/debian/test-deb.sh).
DEB_APT_PACKAGES      := chrpath
DEB_TEST_APT_PACKAGES := lintian
DEB_BUILD = OBJDUMP=$(CROSS_PREFIX)objdump STRIP=$(CROSS_PREFIX)strip LITERT_LIBDIR=$(LITERT_DIR)/lib \
  systemd/debian/build-deb.sh $(ARCH) $(SIGHTD_BIN) $(TFLITE_DIR)/lib

.PHONY: deb test-deb deps-deb

# apt-install LIST: installs the Debian packages of LIST that are missing.
define apt-install
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps-deb:
	$(call apt-install,$(DEB_APT_PACKAGES))

deb: build deps-deb
	$(DEB_BUILD) bin

test-deb: build deps-deb
	$(call apt-install,$(DEB_TEST_APT_PACKAGES))
	@test "$(ARCH)" = "$(HOST_ARCH)" || { echo "test-deb: installs the package here, so ARCH must be $(HOST_ARCH)" >&2; exit 1; }
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	$(DEB_BUILD) "$$d"; \
	systemd/debian/test-deb.sh "$$d"/sightd_*_$(ARCH).deb

# ---- model export toolchain (quant/export, Python) --------------------------
# make export-deps   .venv/ at the repository root with the hash-locked export
#                    toolchain (torch, litert-torch, open_clip, ...; no TensorFlow)
#                    and .venv/bin/sightd-export. About 4.4 GB: torch from PyPI is
#                    a CUDA build whose libtorch links the nvidia-* runtime wheels
#                    even on a CPU-only machine. Off the path of build/run.
# make test-export   the toolchain's tests: parity of exported bundles through
#                    bin/sightd against open_clip's PyTorch output
# make bench-export  full-size ViT-B-32 and MobileCLIP2-S0 (random weights),
#                    float32 and int8: parity, sizes, conversion, sightd bench
# make bench-distill a ViT-B-32 teacher distilled into a small int8 student on
#                    vtest.avi's record (sightd-export distill, compare)
# The lock files come from requirements*.in by `make export-lock` (pip-tools).
# Everything is installed with --no-deps from the locks: the locks hold the
# whole closure except triton (torch's GPU compiler, unused on a CPU).
EXPORT_DIR      := quant/export
EXPORT_VENV     := $(CURDIR)/.venv
EXPORT_LOCKS    := $(EXPORT_DIR)/requirements.lock $(EXPORT_DIR)/requirements-dev.lock
EXPORT_PYTHON   ?= python3
# Stamps: the locks' hash (the whole venv) and pyproject.toml's (the editable
# install of sightd-export alone, seconds).
EXPORT_LOCK_HASH = $(shell cat $(EXPORT_LOCKS) | sha256sum | cut -c1-16)
# The editable install of sightd-export points at one work tree: its stamp
# names pyproject.toml's hash and the tree.
EXPORT_PKG_HASH  = $(shell { sha256sum $(EXPORT_DIR)/pyproject.toml; echo "$(CURDIR)"; } | sha256sum | cut -c1-16)
# The type checker (mypy) has a lock of its own, added to the venv under its
# own stamp: changing it does not reinstall torch.
EXPORT_LINT_LOCK = $(EXPORT_DIR)/requirements-lint.lock
EXPORT_LINT_HASH = $(shell sha256sum $(EXPORT_LINT_LOCK) | cut -c1-16)
# The venv itself lives outside the work tree, keyed on the locks, and .venv
# links to it: another clone on this machine (CI's) finds it installed instead
# of installing 4.4 GB again.
EXPORT_VENV_STORE ?= $(HOME)/.cache/sightd/export-venv
EXPORT_VENV_REAL   = $(EXPORT_VENV_STORE)/$(EXPORT_LOCK_HASH)

.PHONY: export-deps deps-python-venv export-lock test-export bench-export

# python3 -m venv needs Debian's python3-venv (ensurepip) on a plain system.
deps-python-venv:
	@$(EXPORT_PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
	  echo "export-deps: installing python3-venv"; $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-venv; }

export-deps: deps-python-venv
	@real="$(EXPORT_VENV_REAL)"; lock="$$real/.stamp-lock"; pkg="$$real/.stamp-pkg-$(EXPORT_PKG_HASH)"; \
	if [ ! -f "$$lock" ]; then \
	  start=$$(date +%s); \
	  rm -rf "$$real"; mkdir -p "$(EXPORT_VENV_STORE)"; \
	  $(EXPORT_PYTHON) -m venv "$$real"; \
	  "$$real/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes \
	    $(addprefix -r ,$(EXPORT_LOCKS)); \
	  "$$real/bin/python" -c "import torch, open_clip, litert_torch, ai_edge_quantizer, ai_edge_litert"; \
	  touch "$$lock"; \
	  echo "export-deps: installed in $$(( $$(date +%s) - start ))s, $$(du -sh "$$real" | cut -f1) in $$real"; \
	fi; \
	if [ "$$(readlink "$(EXPORT_VENV)" 2>/dev/null)" != "$$real" ]; then rm -rf "$(EXPORT_VENV)"; ln -s "$$real" "$(EXPORT_VENV)"; fi; \
	if [ ! -f "$$pkg" ]; then \
	  rm -f "$$real"/.stamp-pkg-*; \
	  "$$real/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$(CURDIR)/$(EXPORT_DIR)"; \
	  touch "$$pkg"; \
	fi; \
	lint="$$real/.stamp-lint-$(EXPORT_LINT_HASH)"; \
	if [ ! -f "$$lint" ]; then \
	  rm -f "$$real"/.stamp-lint-*; \
	  "$$real/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r $(EXPORT_LINT_LOCK); \
	  touch "$$lint"; \
	fi; \
	echo "export-deps: $(EXPORT_VENV) -> $$real up to date, sightd-export from $(CURDIR)/$(EXPORT_DIR)"

export-lock:
	$(EXPORT_PYTHON) -m venv /tmp/sightd-piptools && /tmp/sightd-piptools/bin/pip install -q pip-tools
	cd $(EXPORT_DIR) && /tmp/sightd-piptools/bin/pip-compile -q --generate-hashes --no-header --strip-extras \
	  --unsafe-package triton -o requirements.lock requirements.in
	cd $(EXPORT_DIR) && /tmp/sightd-piptools/bin/pip-compile -q --generate-hashes --no-header --strip-extras \
	  -o requirements-dev.lock requirements-dev.in
	cd $(EXPORT_DIR) && /tmp/sightd-piptools/bin/pip-compile -q --generate-hashes --no-header --strip-extras \
	  -o requirements-lint.lock requirements-lint.in

test-export: export-deps build deps-fixtures
	cd $(EXPORT_DIR) && $(EXPORT_VENV)/bin/ruff check . && $(EXPORT_VENV)/bin/ruff format --check .
	cd $(EXPORT_DIR) && $(EXPORT_VENV)/bin/mypy --cache-dir $(CURDIR)/bin/mypy-cache
	cd $(EXPORT_DIR) && SIGHTD_BIN=$(CURDIR)/bin/sightd OPENCV_DATA=$(OPENCV_DATA) \
	  $(EXPORT_VENV)/bin/python -m pytest -q -rs -p no:cacheprovider tests

# make bench-distill: a ViT-B-32 teacher (random spread weights) distilled into
# BENCH_DISTILL_STUDENT on vtest.avi's record: held-out cosine, rule agreement
# and both image towers in sightd bench. bin/bench-distill keeps finished steps
# (the teacher's checkpoint and bundle, the student): delete it to redo them.
BENCH_DISTILL_STUDENT ?= mobilenetv4-conv-small
BENCH_DISTILL_SIZE    ?= 160
BENCH_DISTILL_EPOCHS  ?= 12
.PHONY: bench-distill
bench-distill: export-deps build deps-fixtures record-vtest
	$(EXPORT_VENV)/bin/python $(EXPORT_DIR)/bench_distill.py --sightd bin/sightd --photos $(OPENCV_DATA) \
	  --record bin/record-vtest --work bin/bench-distill --student $(BENCH_DISTILL_STUDENT) \
	  --student-size $(BENCH_DISTILL_SIZE) --epochs $(BENCH_DISTILL_EPOCHS) 2>bin/bench-distill.log | tee bin/bench-distill.txt

BENCH_EXPORT_MODELS ?= ViT-B-32 MobileCLIP2-S0
bench-export: export-deps build deps-fixtures
	$(EXPORT_VENV)/bin/python $(EXPORT_DIR)/bench_export.py --sightd bin/sightd --photos $(OPENCV_DATA) \
	  --work bin/bench-export $(BENCH_EXPORT_MODELS) 2>bin/bench-export.log | tee bin/bench-export.txt

# ---- a real Home Assistant (daemon/ha_test.go) ------------------------------
# make ha-deps      Home Assistant core 2024.3.3 (the newest release for Python
#                   3.11) in its own hash-locked venv, with the requirements of
#                   every integration the test loads, so HA runs with --skip-pip
#                   and fetches nothing. It lives in ~/.cache/sightd/ha-venv/<lock's
#                   hash>: a second run, or another clone on the machine, reuses it.
# make test-ha      TestHomeAssistant alone: Mosquitto, Home Assistant onboarded and
#                   its MQTT entry made over REST, sightd on the demo bundle and the
#                   street video; every entity sightd announces checked in HA's
#                   states. `make test` runs it too (go test sees SIGHTD_HA_VENV).
# make ha-lock      daemon/hatest/requirements.lock from requirements.in, with the
#                   release's own package_constraints.txt as constraints.
# make ha-screenshot  bin/ha-dashboard.png (HA's overview dashboard with sightd's
#                   sensors and pictures) and bin/ha-device.png (sightd's device
#                   page: every entity), by headless Chromium (Debian's chromium).
# make readme-pictures  the README's pictures in daemon/doc/, of our own data: the
#                   same test on a synthetic video (an orange ball rolling across a
#                   yard, written by the test with OpenCV): snapshot.jpg (an event's
#                   snapshot from sightd's HTTP API), ha-dashboard.png and
#                   ha-device.png (quantised by pngquant).
HA_DIR        := daemon/hatest
HA_LOCK       := $(HA_DIR)/requirements.lock
HA_VERSION    := 2024.3.3
HA_PYTHON     ?= python3
HA_VENV_STORE ?= $(HOME)/.cache/sightd/ha-venv
HA_VENV        = $(HA_VENV_STORE)/$(shell sha256sum $(HA_LOCK) | cut -c1-16)

.PHONY: ha-deps ha-lock test-ha ha-screenshot readme-pictures

ha-deps: deps-python-venv
	@venv="$(HA_VENV)"; \
	if [ ! -f "$$venv/.stamp-lock" ]; then \
	  $(HA_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' || { \
	    echo "ha-deps: Home Assistant $(HA_VERSION) runs on Python 3.11 or 3.12; $(HA_PYTHON) is $$($(HA_PYTHON) -V 2>&1) (set HA_PYTHON)" >&2; exit 1; }; \
	  start=$$(date +%s); \
	  rm -rf "$$venv"; mkdir -p "$(HA_VENV_STORE)"; \
	  $(HA_PYTHON) -m venv "$$venv"; \
	  "$$venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r $(HA_LOCK); \
	  "$$venv/bin/python" -c "import homeassistant.const as c, paho.mqtt, hass_frontend; assert c.__version__ == '$(HA_VERSION)', c.__version__"; \
	  touch "$$venv/.stamp-lock"; \
	  echo "ha-deps: installed in $$(( $$(date +%s) - start ))s, $$(du -sh "$$venv" | cut -f1) in $$venv"; \
	fi; \
	echo "ha-deps: Home Assistant $(HA_VERSION) in $$venv"

ha-lock:
	$(HA_PYTHON) -m venv /tmp/sightd-piptools && /tmp/sightd-piptools/bin/pip install -q pip-tools
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	/tmp/sightd-piptools/bin/pip download -q --no-deps -d "$$d" homeassistant==$(HA_VERSION); \
	unzip -p "$$d"/homeassistant-$(HA_VERSION)-*.whl homeassistant/package_constraints.txt > "$$d/constraints.txt"; \
	cd $(HA_DIR) && /tmp/sightd-piptools/bin/pip-compile -q --generate-hashes --no-header --strip-extras --allow-unsafe \
	  --constraint "$$d/constraints.txt" -o requirements.lock requirements.in

HA_SCREENSHOT_APT_PACKAGES := chromium
# -v and the check of its verdict: a make test-ha that skipped would not pass.
test-ha: deps build ha-deps
	SIGHTD_HA_VENV=$(HA_VENV) $(GO) test $(GO_TAGS) -count=1 -timeout 20m -v -run '^TestHomeAssistant$$' ./daemon \
	  | tee bin/test-ha.log
	@grep -q -- '^--- PASS: TestHomeAssistant' bin/test-ha.log || { echo "test-ha: TestHomeAssistant did not pass (bin/test-ha.log)" >&2; exit 1; }

ha-screenshot: deps build ha-deps
	$(call apt-install,$(HA_SCREENSHOT_APT_PACKAGES))
	SIGHTD_HA_VENV=$(HA_VENV) SIGHTD_HA_SCREENSHOTS=$(CURDIR)/bin \
	  $(GO) test $(GO_TAGS) -count=1 -timeout 20m -run '^TestHomeAssistant$$' ./daemon
	@echo "ha-screenshot: bin/ha-dashboard.png (the overview dashboard), bin/ha-device.png (sightd's device page)"

README_PICTURES_APT_PACKAGES := chromium pngquant
readme-pictures: deps build ha-deps
	$(call apt-install,$(README_PICTURES_APT_PACKAGES))
	rm -rf bin/readme-pictures && mkdir -p bin/readme-pictures daemon/doc
	SIGHTD_HA_VENV=$(HA_VENV) SIGHTD_README_PICTURES=$(CURDIR)/bin/readme-pictures \
	  $(GO) test $(GO_TAGS) -count=1 -timeout 20m -v -run '^TestReadmePictures$$' ./daemon | tee bin/readme-pictures.log
	@grep -q -- '^--- PASS: TestReadmePictures' bin/readme-pictures.log || { echo "readme-pictures: TestReadmePictures did not pass (bin/readme-pictures.log)" >&2; exit 1; }
	for f in ha-dashboard ha-device; do \
	  pngquant --force --strip --quality 40-90 --output daemon/doc/$$f.png bin/readme-pictures/$$f.png; done
	cp bin/readme-pictures/snapshot.jpg daemon/doc/snapshot.jpg
	@ls -l daemon/doc/snapshot.jpg daemon/doc/ha-dashboard.png daemon/doc/ha-device.png
