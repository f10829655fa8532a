# ssl.h - build, tests, demo. Every goal but clean first installs the
# Debian packages the project needs (scripts/install-deps.sh).
#
#   make            ./pack ./train ./probe (CUDA when nvcc is found)
#   make test       the CPU test suite
#   make sanitize   the same tests under ASan + UBSan
#   make fuzz       each file reader under libFuzzer, FUZZ_SECONDS each (clang)
#   make test-gpu   the GPU suite (needs an NVIDIA GPU)
#   make demo       pack Fashion-MNIST, train SimCLR on it, probe the result
#
# Optional features, each found automatically and each with an opt-out:
#   NO_CUDA=1 NO_TURBOJPEG=1 NO_OPENBLAS=1 NO_NCCL=1 NO_MPI=1
# CUDA_ARCH=sm_90 picks the GPU architecture; CUDA_HOME=/usr/local/cuda.

CC       ?= cc
CUDA_HOME ?= /usr/local/cuda
CUDA_ARCH ?= sm_90
OPT      ?= -O3 -march=native
CFLAGS   += -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -pthread
LDLIBS   += -lm -pthread
BUILD    := build
SHARED   ?= ../shared

# ---- set-up on a fresh machine, before anything is detected ---------------
# make reads this file, remakes build/deps.mk by running
# scripts/install-deps.sh (a no-op when every package is there), then starts
# over, so the feature lines below see every library the set-up installed.
# NO_DEPS=1 skips the set-up and builds with what is installed.
.DEFAULT_GOAL := all
DEPS_STAMP := $(BUILD)/deps.mk
ifneq ($(NO_DEPS),1)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
-include $(DEPS_STAMP)
# the first pass, before the set-up: nothing is detected or said yet
SETUP_PASS := $(if $(wildcard $(DEPS_STAMP)),,yes)
endif
endif
$(DEPS_STAMP): scripts/install-deps.sh
	@mkdir -p $(BUILD)
	@bash scripts/install-deps.sh || { echo "[deps] set-up failed; NO_DEPS=1 builds with what is installed" >&2; exit 1; }
	@echo "# scripts/install-deps.sh found every package; delete this file to check again" > $@
deps: $(DEPS_STAMP)

# ---- feature detection: one line each ------------------------------------
# (not on the set-up pass: what it would find is about to change)
ifeq ($(SETUP_PASS),)
NVCC := $(shell command -v nvcc 2>/dev/null || (test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc))
ifeq ($(NO_CUDA),1)
  NVCC :=
endif
ifneq ($(NVCC),)
  $(info [ssl.h] CUDA        yes  ($(NVCC), -arch=$(CUDA_ARCH); NO_CUDA=1 to build CPU-only))
  GPU_CFLAGS := -DSSL_CUDA -I$(CUDA_HOME)/include
  GPU_LIBS   := $(BUILD)/ssl_cuda.o -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
  GPU_DEPS   := $(BUILD)/ssl_cuda.o
else
  $(info [ssl.h] CUDA        no   (nvcc not found: CPU-only build))
endif

# CUDNN=1: cuDNN's convolutions as well, on request (conv=cudnn or
# ssl_cuda_set_conv); CUDNN_PREFIX=DIR for a cuDNN outside the toolkit
# (DIR/include, DIR/lib), e.g. the nvidia-cudnn wheel's folder
ifneq ($(NVCC),)
ifeq ($(CUDNN),1)
  CUDNN_PREFIX ?= $(CUDA_HOME)
  $(info [ssl.h] cuDNN       yes  ($(CUDNN_PREFIX); convolutions through cuDNN when conv=cudnn))
  NVCC_DEFS += -DSSL_CUDNN -I$(CUDNN_PREFIX)/include
  GPU_LIBS  += -L$(CUDNN_PREFIX)/lib -L$(CUDNN_PREFIX)/lib64 -Wl,-rpath,$(CUDNN_PREFIX)/lib -Wl,-rpath,$(CUDNN_PREFIX)/lib64 -lcudnn
else
  $(info [ssl.h] cuDNN       no   (convolutions through im2col + cuBLAS; CUDNN=1 adds cuDNN's))
endif
# cuDNN's descriptor calls are host code: where cuDNN is installed, make
# test also checks the cuDNN build's convolution plans (build/tests-cudnn)
CUDNN_CHECK_PREFIX := $(or $(CUDNN_PREFIX),$(CUDA_HOME))
HAVE_CUDNN := $(wildcard $(CUDNN_CHECK_PREFIX)/include/cudnn.h)
endif

ifneq ($(NO_TURBOJPEG),1)
  TURBOJPEG := $(shell pkg-config --exists libturbojpeg 2>/dev/null && echo yes)
endif
# STB_PREFIX=DIR: stb_image.h and stb_image_write.h from DIR (a copy carried
# to a machine without Debian's libstb-dev; bench/gpu_deps.sh)
ifneq ($(STB_PREFIX),)
  CFLAGS += -I$(STB_PREFIX)
endif
# JPEG_PREFIX=DIR: libjpeg-turbo from DIR/include and DIR/lib (a copy
# carried to a machine without the Debian package or pkg-config)
ifneq ($(JPEG_PREFIX),)
ifneq ($(NO_TURBOJPEG),1)
  $(info [ssl.h] turbojpeg   yes  ($(JPEG_PREFIX); region decode through its libjpeg API))
  CFLAGS += -DSSL_TURBOJPEG -DSSL_LIBJPEG -I$(JPEG_PREFIX)/include
  LDLIBS += -L$(JPEG_PREFIX)/lib -Wl,-rpath,$(abspath $(JPEG_PREFIX))/lib -lturbojpeg -ljpeg
  TURBOJPEG := prefix
endif
endif
ifeq ($(TURBOJPEG),yes)
  $(info [ssl.h] turbojpeg   yes  (JPEG through libjpeg-turbo; NO_TURBOJPEG=1 for stb_image))
  CFLAGS += -DSSL_TURBOJPEG $(shell pkg-config --cflags libturbojpeg)
  LDLIBS += $(shell pkg-config --libs libturbojpeg)
  ifeq ($(shell pkg-config --exists libjpeg 2>/dev/null && echo yes),yes)
    $(info [ssl.h] libjpeg     yes  (the loader decodes only the rows and columns its crops cover))
    CFLAGS += -DSSL_LIBJPEG $(shell pkg-config --cflags libjpeg)
    LDLIBS += $(shell pkg-config --libs libjpeg)
  else
    $(info [ssl.h] libjpeg     no   (whole JPEGs are decoded; apt-get install libjpeg62-turbo-dev))
  endif
else ifneq ($(TURBOJPEG),prefix)
  $(info [ssl.h] turbojpeg   no   (JPEG through stb_image))
endif

ifneq ($(NO_OPENBLAS),1)
  OPENBLAS := $(shell pkg-config --exists openblas 2>/dev/null && echo yes)
endif
ifeq ($(OPENBLAS),yes)
  $(info [ssl.h] OpenBLAS    yes  (CPU GEMM through CBLAS; NO_OPENBLAS=1 for the plain loops))
  CFLAGS += -DSSL_OPENBLAS $(shell pkg-config --cflags openblas)
  LDLIBS += $(shell pkg-config --libs openblas)
else
  $(info [ssl.h] OpenBLAS    no   (CPU GEMM through plain loops: slow))
endif

# MPI launches the ranks (mpirun, srun) and carries the CPU tensors'
# collectives; NCCL carries the GPU tensors'. mpicc says how to compile and
# link against its MPI; the programs are still built with $(CC).
ifneq ($(NO_MPI),1)
  MPICC := $(shell command -v mpicc 2>/dev/null)
endif
ifneq ($(MPICC),)
  MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
  MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null)
endif
ifneq ($(MPI_LIBS),)
  $(info [ssl.h] MPI         yes  ($(MPICC): mpirun -np N ./train ..., srun ./train ...; NO_MPI=1 for one rank only))
  CFLAGS += -DSSL_MPI $(MPI_CFLAGS)
  LDLIBS += $(MPI_LIBS)
  MPIRUN := $(shell command -v mpirun 2>/dev/null)
else
  $(info [ssl.h] MPI         no   (one rank per run; apt-get install libopenmpi-dev openmpi-bin for many))
endif

ifneq ($(NVCC),)
ifneq ($(NO_NCCL),1)
  NCCL := $(shell test -f $(CUDA_HOME)/include/nccl.h -o -f /usr/include/nccl.h && echo yes)
endif
endif
ifeq ($(NCCL),yes)
ifneq ($(MPI_LIBS),)
  $(info [ssl.h] NCCL        yes  (GPU tensors' collectives between ranks; NO_NCCL=1 for one GPU only))
else
  $(info [ssl.h] NCCL        yes  (one GPU per run until MPI is found: MPI launches the ranks and hands out NCCL's id))
endif
  GPU_CFLAGS += -DSSL_NCCL
  NVCC_DEFS  += -DSSL_NCCL
  GPU_LIBS   += -lnccl
else ifneq ($(NVCC),)
  $(info [ssl.h] NCCL        no   (one GPU per run; NCCL's nccl.h was not found))
endif

endif # SETUP_PASS

# ---- programs ------------------------------------------------------------
PROGRAMS := pack train probe
all: $(PROGRAMS)

# build/features records the compiler, flags and libraries of the last
# build; every binary depends on it, so a binary is never linked from a
# different feature set than its neighbours (a library installed or removed
# since, NO_OPENBLAS=1, ...): the next make rebuilds them all
FEATURES := $(BUILD)/features
ifeq ($(SETUP_PASS),)
FEATURE_LINE := $(CC) $(CFLAGS) $(GPU_CFLAGS) | $(LDLIBS) $(GPU_LIBS)
$(shell mkdir -p $(BUILD) && (printf '%s\n' '$(FEATURE_LINE)' | cmp -s - $(FEATURES) || printf '%s\n' '$(FEATURE_LINE)' > $(FEATURES)))
endif

pack: pack.c ssl.h $(FEATURES)
	$(CC) $(CFLAGS) -o $@ pack.c $(LDLIBS)

train: train.c ssl.h $(GPU_DEPS) $(FEATURES)
	$(CC) $(CFLAGS) $(GPU_CFLAGS) -o $@ train.c $(GPU_LIBS) $(LDLIBS)

probe: probe.c ssl.h $(GPU_DEPS) $(FEATURES)
	$(CC) $(CFLAGS) $(GPU_CFLAGS) -o $@ probe.c $(GPU_LIBS) $(LDLIBS)

# the object is rebuilt when its flags change (CUDNN=1 on or off)
CUDA_OBJ_FLAGS := -O3 -arch=$(CUDA_ARCH) -std=c++17 -Xcompiler -Wall,-fPIC $(filter -DSSL_%,$(CFLAGS)) $(NVCC_DEFS)
ifneq ($(NVCC),)
$(shell mkdir -p $(BUILD) && (echo '$(CUDA_OBJ_FLAGS)' | cmp -s - $(BUILD)/.cuda-flags || echo '$(CUDA_OBJ_FLAGS)' > $(BUILD)/.cuda-flags))
endif
$(BUILD)/ssl_cuda.o: ssl.cu ssl.h $(BUILD)/.cuda-flags | $(BUILD)
	$(NVCC) $(CUDA_OBJ_FLAGS) -c ssl.cu -o $@

$(BUILD):
	mkdir -p $(BUILD)

# a few hundred real CIFAR-10 JPEGs for the tests (50 per class)
TESTDATA := $(BUILD)/data/cifar10/test
$(BUILD)/data/.cifar-subset: | $(BUILD)
	@test -f $(SHARED)/data/cifar10-jpg.tar.gz || { echo "missing $(SHARED)/data/cifar10-jpg.tar.gz (the tests read real CIFAR-10 JPEGs from it)"; exit 1; }
	mkdir -p $(BUILD)/data
	tar xzf $(SHARED)/data/cifar10-jpg.tar.gz -C $(BUILD)/data --wildcards 'cifar10/test/*/00[0-4]?.jpg'
	touch $@

# ---- tests ---------------------------------------------------------------
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_ENV := SSL_TEST_DATA=$(BUILD)/data SSL_TEST_TMP=$(BUILD)/tmp SSL_FMNIST=/usr/share/datasets/fashion-mnist

$(BUILD)/tests: $(TEST_SRC) tests/test.h tests/model_fixture.h tests/example_loss.h ssl.h $(FEATURES) | $(BUILD)
	$(CC) $(CFLAGS) -I. -Itests -o $@ $(TEST_SRC) $(LDLIBS)

$(BUILD)/tests-asan: $(TEST_SRC) tests/test.h tests/model_fixture.h ssl.h $(FEATURES) | $(BUILD)
	$(CC) $(CFLAGS) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	    -I. -Itests -o $@ $(TEST_SRC) $(LDLIBS)

$(BUILD)/%-asan: %.c ssl.h $(FEATURES) | $(BUILD)
	$(CC) $(CFLAGS) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	    -o $@ $< $(LDLIBS)

# with nvcc present, the CUDA backend's emulation tests (its kernels' code
# run on the host against the CPU reference; no GPU needed) run too, twice:
# each launch's indices in order, then in a shuffled order (a GPU runs them
# in none: a kernel whose result depends on the order races there)
# Each suite's output is also kept in build/test-logs; the last line adds
# up their closing "N passed, N failed" lines (a failing suite stops make
# before it, its own closing line last).
TEST_LOGS := $(BUILD)/test-logs
test: SHELL := /bin/bash
test: $(BUILD)/data/.cifar-subset pack train probe $(BUILD)/tests $(if $(NVCC),$(BUILD)/tests-gpu) $(if $(HAVE_CUDNN),$(BUILD)/tests-cudnn)
	@rm -rf $(BUILD)/tmp $(TEST_LOGS) && mkdir -p $(BUILD)/tmp $(TEST_LOGS)
	set -o pipefail; $(TEST_ENV) SSL_LEARN=1 SSL_PACK=./pack SSL_TRAIN=./train SSL_PROBE=./probe $(BUILD)/tests | tee $(TEST_LOGS)/cpu.log
	$(if $(NVCC),set -o pipefail; $(TEST_ENV) $(BUILD)/tests-gpu emu_ | tee $(TEST_LOGS)/emu.log)
	$(if $(NVCC),set -o pipefail; $(TEST_ENV) SSL_EMU_ORDER=shuffle $(BUILD)/tests-gpu emu_ | tee $(TEST_LOGS)/emu-shuffled.log)
	$(if $(HAVE_CUDNN),set -o pipefail; $(TEST_ENV) $(BUILD)/tests-cudnn emu_cudnn_ emu_conv_engine | tee $(TEST_LOGS)/cudnn.log)
	$(if $(NVCC),set -o pipefail; NO_TORCH=1 bash bench/gpu_rehearse.sh | tee $(TEST_LOGS)/rehearsal.log)
	set -o pipefail; TOY=1 OUT=$(BUILD)/imagenette-toy SHARED=$(SHARED)/data bash bench/imagenette_bench.sh | tee $(TEST_LOGS)/imagenette.log
	@cat $(TEST_LOGS)/*.log | awk '/^([a-z]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$$/ { \
	    sub(/^[a-z]+: /, ""); p += $$1; f += $$3; s += $$5; n++ } \
	    END { if (n == 0) { print "make test: no suite closed with a count"; exit 1 } \
	          printf "make test: %d passed, %d failed, %d skipped\n", p, f, s; exit f > 0 }'

# the GPU session's scripts (bench/gpu_report.sh, bench/gpu_e2e.sh) run here
# as on the device, emulated and tiny, PyTorch's side on the CPU (build/venv),
# the cuDNN phase included, and their outputs checked (make test runs it
# without PyTorch and cuDNN)
rehearse-gpu: $(BUILD)/data/.cifar-subset pack train probe
	bash scripts/pyenv.sh > /dev/null
	bash bench/gpu_rehearse.sh full

# export to / import from PyTorch, checked with torch + torchvision (build/venv)
test-export: pack train probe
	$(BUILD)/venv/bin/python tests/test_export.py

# the same tests, and the programs they run, under ASan + UBSan
sanitize: $(BUILD)/data/.cifar-subset $(BUILD)/pack-asan $(BUILD)/train-asan $(BUILD)/probe-asan $(BUILD)/tests-asan $(if $(NVCC),$(BUILD)/tests-gpu-asan)
	@rm -rf $(BUILD)/tmp && mkdir -p $(BUILD)/tmp
	$(TEST_ENV) SSL_PACK=$(BUILD)/pack-asan SSL_TRAIN=$(BUILD)/train-asan SSL_PROBE=$(BUILD)/probe-asan \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/tests-asan
	$(if $(NVCC),SSL_TEST_EMU=1 ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/tests-gpu-asan emu_)

# the GPU suite's emulation half with the kernels' host code under
# AddressSanitizer: plain (not strict) emulation, so that device memory is
# the sanitizer's heap and a kernel reading past a tensor is caught
$(BUILD)/ssl_cuda_asan.o: ssl.cu ssl.h $(BUILD)/.cuda-flags | $(BUILD)
	$(NVCC) $(CUDA_OBJ_FLAGS) -Xcompiler -fsanitize=address,-fno-omit-frame-pointer -c ssl.cu -o $@
$(BUILD)/tests-gpu-asan: $(GPU_TEST_SRC) tests/test.h tests/gpu_common.h tests/model_fixture.h ssl.h $(BUILD)/ssl_cuda_asan.o | $(BUILD)
	$(CC) $(CFLAGS) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -ffp-contract=off \
	    $(GPU_CFLAGS) -I. -Itests -o $@ $(GPU_TEST_SRC) $(subst $(BUILD)/ssl_cuda.o,$(BUILD)/ssl_cuda_asan.o,$(GPU_LIBS)) $(LDLIBS)

GPU_TEST_SRC := $(sort $(wildcard tests/gpu_*.c))
$(BUILD)/tests-gpu: $(GPU_TEST_SRC) tests/test.h tests/gpu_common.h tests/model_fixture.h tests/example_loss.h ssl.h $(GPU_DEPS) $(FEATURES) | $(BUILD)
	@test -n "$(NVCC)" || { echo "make test-gpu needs nvcc (the CUDA toolkit)"; exit 1; }
	$(CC) $(CFLAGS) -ffp-contract=off $(GPU_CFLAGS) -I. -Itests -o $@ $(GPU_TEST_SRC) $(GPU_LIBS) $(LDLIBS)

# the suite linked with a cuDNN build of ssl.cu (make test runs its
# emu_cudnn_ tests: the convolution plans, through cuDNN's getters)
$(BUILD)/ssl_cuda_cudnn.o: ssl.cu ssl.h $(BUILD)/.cuda-flags | $(BUILD)
	$(NVCC) $(CUDA_OBJ_FLAGS) -DSSL_CUDNN -I$(CUDNN_CHECK_PREFIX)/include -c ssl.cu -o $@
$(BUILD)/tests-cudnn: $(GPU_TEST_SRC) tests/test.h tests/gpu_common.h tests/model_fixture.h ssl.h $(BUILD)/ssl_cuda_cudnn.o | $(BUILD)
	$(CC) $(CFLAGS) -ffp-contract=off $(GPU_CFLAGS) -I. -Itests -o $@ $(GPU_TEST_SRC) \
	    $(subst $(BUILD)/ssl_cuda.o,$(BUILD)/ssl_cuda_cudnn.o,$(GPU_LIBS)) -L$(CUDNN_CHECK_PREFIX)/lib -L$(CUDNN_CHECK_PREFIX)/lib64 \
	    -Wl,-rpath,$(CUDNN_CHECK_PREFIX)/lib -Wl,-rpath,$(CUDNN_CHECK_PREFIX)/lib64 -lcudnn $(LDLIBS)

# sgemm at the demo network's shapes, to compare OpenBLAS's kernel choices
$(BUILD)/blas_bench: bench/blas_bench.c ssl.h $(FEATURES) | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ bench/blas_bench.c $(LDLIBS)

# the GPU step benchmark (bench/gpu_report.sh; emulate=1 runs it here)
$(BUILD)/gpu_step: bench/gpu_step.c ssl.h $(GPU_DEPS) | $(BUILD)
	@test -n "$(NVCC)" || { echo "build/gpu_step needs nvcc (the CUDA toolkit)"; exit 1; }
	$(CC) $(CFLAGS) $(GPU_CFLAGS) -I. -o $@ bench/gpu_step.c $(GPU_LIBS) $(LDLIBS)
# batch norm's passes alone, per shape (bench/gpu_report.sh)
$(BUILD)/bn_bench: bench/bn_bench.c ssl.h $(GPU_DEPS) | $(BUILD)
	@test -n "$(NVCC)" || { echo "build/bn_bench needs nvcc (the CUDA toolkit)"; exit 1; }
	$(CC) $(CFLAGS) $(GPU_CFLAGS) -I. -o $@ bench/bn_bench.c $(GPU_LIBS) $(LDLIBS)

SANITIZER ?= $(CUDA_HOME)/bin/compute-sanitizer
# the suite, then its GPU tests again under compute-sanitizer memcheck and
# initcheck (application-only keeps the deliberate out-of-memory child out)
test-gpu: $(BUILD)/tests-gpu
	$(BUILD)/tests-gpu
	$(SANITIZER) --tool memcheck --leak-check full --target-processes application-only --error-exitcode 1 $(BUILD)/tests-gpu gpu_
	$(SANITIZER) --tool initcheck --target-processes application-only --error-exitcode 1 $(BUILD)/tests-gpu gpu_

# ---- fuzzing -------------------------------------------------------------
# make fuzz: one libFuzzer harness per reader (tests/fuzz/fuzz_*.c: pack,
# image, image_stb, sslt, safetensors, config), built with clang and
# ASan + UBSan, each run FUZZ_SECONDS (default 30) from its committed seed
# corpus (tests/fuzz/corpus/<name>; what it finds grows a copy under
# build/fuzz/<name>/corpus). A crash leaves its input in build/fuzz/<name>/
# and stops make; such inputs become tests (tests/fixtures/hostile/).
# image_stb is the image harness without libjpeg-turbo (JPEG through
# stb_image; UBSan's shift checks are off in stb's code, stb-ignore.txt). FUZZ=pack,config picks harnesses. Images are capped at 2^18
# pixels there, so that the fuzzer does not spend its time on big decodes.
FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ         ?= pack,image,image_stb,sslt,safetensors,config
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_COMMA   := ,
FUZZ_CFLAGS  := -std=gnu11 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined \
                -DSSL_MAX_PIXELS='(1u << 18)' -pthread -I. -Itests/fuzz
FUZZ_JPEG    := -DSSL_TURBOJPEG -DSSL_LIBJPEG
FUZZ_LIBS    := -lm -pthread
FUZZ_JPEG_LIBS := -lturbojpeg -ljpeg

$(FUZZ_DIR)/.deps: scripts/install-deps.sh
	bash scripts/install-deps.sh --fuzz
	@mkdir -p $(FUZZ_DIR) && touch $@

$(FUZZ_DIR)/fuzz_image_stb: tests/fuzz/fuzz_image.c tests/fuzz/fuzz.h tests/fuzz/stb-ignore.txt ssl.h | $(FUZZ_DIR)/.deps
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize-ignorelist=tests/fuzz/stb-ignore.txt -o $@ $< $(FUZZ_LIBS)
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h ssl.h | $(FUZZ_DIR)/.deps
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_JPEG) -o $@ $< $(FUZZ_LIBS) $(FUZZ_JPEG_LIBS)

fuzz: SHELL := /bin/bash
fuzz: $(addprefix $(FUZZ_DIR)/fuzz_,$(subst $(FUZZ_COMMA), ,$(FUZZ)))
	@set -e; for h in $(subst $(FUZZ_COMMA), ,$(FUZZ)); do \
	    mkdir -p $(FUZZ_DIR)/$$h/corpus; cp -n tests/fuzz/corpus/$$h/* $(FUZZ_DIR)/$$h/corpus/ 2>/dev/null || true; \
	    echo "== fuzz_$$h: $(FUZZ_SECONDS) s"; \
	    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 $(FUZZ_DIR)/fuzz_$$h $(FUZZ_DIR)/$$h/corpus \
	        -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2560 -max_len=65536 -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_DIR)/$$h/ 2> $(FUZZ_DIR)/$$h/log.txt \
	        || { tail -60 $(FUZZ_DIR)/$$h/log.txt; echo "fuzz_$$h: crash input kept in $(FUZZ_DIR)/$$h/"; exit 1; }; \
	    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)' $(FUZZ_DIR)/$$h/log.txt || true; \
	done

# the seed corpora (tests/fuzz/corpus), rewritten from tests/fuzz/make_seeds.c
fuzz-seeds: tests/fuzz/make_seeds.c ssl.h | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $(BUILD)/make_seeds tests/fuzz/make_seeds.c $(LDLIBS)
	$(BUILD)/make_seeds

# ---- demo ----------------------------------------------------------------
FMNIST := /usr/share/datasets/fashion-mnist
FMNIST_CLASSES := T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot
DEMO := $(BUILD)/demo
DEMO_RES := 28
DEMO_WIDTH := 0.125
# SimCLR with AdamW: 937 steps of 64 images, one pass over the 60,000
DEMO_TRAIN := simclr width=$(DEMO_WIDTH) res=$(DEMO_RES) bs=64 epochs=1 warmup=0.1 optimizer=adamw lr=2e-3 lr_scale=0 \
              wd=1e-4 views=crop_flip scale_min=0.3 tau=0.2 projector=256-128 probe_lr=0.01 log_every=100
demo: pack train probe
	mkdir -p $(DEMO)
	./pack $(FMNIST)/train-images-idx3-ubyte.gz $(DEMO)/fmnist-train.ssl classes="$(FMNIST_CLASSES)" force=1
	./pack $(FMNIST)/t10k-images-idx3-ubyte.gz $(DEMO)/fmnist-test.ssl classes="$(FMNIST_CLASSES)" force=1
	./pack info $(DEMO)/fmnist-train.ssl
	./pack info $(DEMO)/fmnist-test.ssl
	@echo "== SimCLR, one pass over the 60,000 Fashion-MNIST training images (on the GPU if there is one, else minutes on the CPU)"
	rm -rf $(DEMO)/run
	./train $(DEMO_TRAIN) data=$(DEMO)/fmnist-train.ssl val=$(DEMO)/fmnist-test.ssl out=$(DEMO)/run
	@echo "== offline probes on all 60,000 / 10,000 images: the trained backbone, then the same network at random init"
	./probe ckpt=$(DEMO)/run train=$(DEMO)/fmnist-train.ssl eval=$(DEMO)/fmnist-test.ssl modes=linear,knn out=$(DEMO)/probe-trained
	./probe init=random arch=resnet18 stem=cifar width=$(DEMO_WIDTH) res=$(DEMO_RES) train=$(DEMO)/fmnist-train.ssl \
	    eval=$(DEMO)/fmnist-test.ssl modes=linear,knn out=$(DEMO)/probe-random
	bash scripts/plot.sh $(DEMO)/run/log.jsonl $(DEMO)/run/training.png
	@echo "== demo done. Top-1 on the 10,000 test images, offline probes (plot: $(DEMO)/run/training.png):"
	@bash scripts/compare_probes.sh "SimCLR, trained" $(DEMO)/probe-trained/probe.json "random init" $(DEMO)/probe-random/probe.json

clean:
	rm -rf $(BUILD) $(PROGRAMS)

.PHONY: all deps test test-export sanitize test-gpu rehearse-gpu demo clean fuzz fuzz-seeds
