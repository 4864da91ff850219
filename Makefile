# volley -- see README.md. `make` builds into build/, `make test` runs every
# test, `make asan` runs them again under ASan+UBSan.
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
PKGS    := liburing libcares openssl jansson libmicrohttpd libconfig libcurl zlib
# Recursive on purpose: pkg-config runs after `deps` has installed them.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS  = -std=c17 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE \
          -fno-strict-aliasing -MMD -MP $(SAN) $(PKG_CFLAGS)
LDFLAGS = $(SAN) -pthread -lm
# Every binary links common/ (liburing, libconfig) and what its modules use.
LIBS    = $$(pkg-config --libs liburing openssl libconfig jansson libcares)
# libxcrypt's crypt_r: the submission users' password hashes (submit/).
CRYPT_LIBS = -lcrypt
# hiredis: the RESP framing of cluster/ (its own I/O; docs/cluster.md).
HIREDIS_LIBS = $$(pkg-config --libs hiredis)

# One folder a module; a program's own files are its folder (volleyd/, cli/)
# or its main.c beside the module it drives (sink/main.c).
COMMON_SRC := $(wildcard common/*.c)
CONFIG_SRC := $(wildcard config/*.c)
TLS_SRC    := $(wildcard tls/*.c)
DNS_SRC    := $(wildcard dns/*.c)
TLSRPT_SRC := $(wildcard tlsrpt/*.c)
MESSAGE_SRC := $(wildcard message/*.c)
FEEDBACK_SRC := $(wildcard feedback/*.c)
IMAP_SRC   := $(wildcard imap/*.c)
DOCTOR_SRC := $(wildcard doctor/*.c)
ENGINE_SRC := $(wildcard engine/*.c)
STS_SRC    := $(wildcard sts/*.c)
SCHED_SRC  := $(wildcard scheduler/*.c)
API_SRC    := $(wildcard api/*.c)
CONSOLE_SRC := $(wildcard console/*.c)
SUBMIT_SRC := $(wildcard submit/*.c)
UNSUB_SRC  := $(wildcard unsub/*.c)
WEBHOOK_SRC := $(wildcard webhook/*.c)
CLUSTER_SRC := $(wildcard cluster/*.c)
SINK_SRC   := $(wildcard sink/sink_*.c)
SMTPD_SRC  := $(wildcard smtpd/*.c)
CLI_SRC    := $(wildcard cli/*.c)
VOLLEYD_SRC := $(wildcard volleyd/*.c)
VBENCH_SRC := $(wildcard bench/vbench/*.c)
VSUBMIT_SRC := $(wildcard bench/submit/*.c)
UNIT_SRC   := $(wildcard tests/unit/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_OBJ := $(call obj,$(COMMON_SRC))
# config/providers.conf is compiled in, as bounce.rules below.
CONFIG_GEN := $(BUILD)/gen/providers_conf.c
CONFIG_OBJ := $(call obj,$(CONFIG_SRC)) $(BUILD)/obj/gen/providers_conf.o
TLS_OBJ    := $(call obj,$(TLS_SRC))
DNS_OBJ    := $(call obj,$(DNS_SRC))
TLSRPT_OBJ := $(call obj,$(TLSRPT_SRC))
MESSAGE_OBJ := $(call obj,$(MESSAGE_SRC))
FEEDBACK_OBJ := $(call obj,$(FEEDBACK_SRC))
IMAP_OBJ   := $(call obj,$(IMAP_SRC))
DOCTOR_OBJ := $(call obj,$(DOCTOR_SRC))
ENGINE_OBJ := $(call obj,$(ENGINE_SRC))
STS_OBJ    := $(call obj,$(STS_SRC))
# scheduler/bounce.rules is compiled in: a C string generated at build time.
SCHED_GEN  := $(BUILD)/gen/bounce_rules.c
SCHED_OBJ  := $(call obj,$(SCHED_SRC)) $(BUILD)/obj/gen/bounce_rules.o
API_OBJ    := $(call obj,$(API_SRC))
# console/www/ is compiled in: each file a C string in one generated table.
CONSOLE_WWW := $(sort $(wildcard console/www/*))
CONSOLE_GEN := $(BUILD)/gen/con_www.c
CONSOLE_OBJ := $(call obj,$(CONSOLE_SRC)) $(BUILD)/obj/gen/con_www.o
SUBMIT_OBJ := $(call obj,$(SUBMIT_SRC))
UNSUB_OBJ  := $(call obj,$(UNSUB_SRC))
WEBHOOK_OBJ := $(call obj,$(WEBHOOK_SRC))
CLUSTER_OBJ := $(call obj,$(CLUSTER_SRC))
SINK_OBJ   := $(call obj,$(SINK_SRC))
SMTPD_OBJ  := $(call obj,$(SMTPD_SRC))

PROGS := $(BUILD)/volley-sink $(BUILD)/volley-drive $(BUILD)/volley-blast \
         $(BUILD)/volley-submit $(BUILD)/volley-render-bench $(BUILD)/volley $(BUILD)/volleyd \
         $(BUILD)/volley-compose $(BUILD)/volley-resolve $(BUILD)/volley-dkim-bench \
         $(BUILD)/volley-bench $(BUILD)/volley-submitlog-bench $(BUILD)/volley-logput \
         $(BUILD)/volley-feedback-bench
UNIT  := $(BUILD)/tests/unit

# Man pages: man/NAME.N.scd (scdoc) into build/man/NAME.N.
MANS  := $(patsubst man/%.scd,$(BUILD)/man/%,$(wildcard man/*.scd))

.PHONY: all deps test asan bench demo fuzz clean man install
all: deps $(PROGS) $(UNIT) $(MANS)

man: $(MANS)

$(BUILD)/man/%: man/%.scd
	@mkdir -p $(dir $@)
	scdoc <$< >$@.tmp && mv $@.tmp $@

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(SCHED_GEN): scheduler/bounce.rules
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from scheduler/bounce.rules: do not edit. */'; \
	  echo 'const char sched_bounce_builtin[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' \
	      -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } >$@.tmp && mv $@.tmp $@

$(CONFIG_GEN): config/providers.conf
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from config/providers.conf: do not edit. */'; \
	  echo 'const char cfg_providers_builtin[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' \
	      -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } >$@.tmp && mv $@.tmp $@

$(CONSOLE_GEN): $(CONSOLE_WWW)
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from console/www/: do not edit. */'; \
	  echo '#include <stddef.h>'; \
	  echo 'struct con_file { const char *name, *data; size_t len; };'; \
	  for f in $(CONSOLE_WWW); do v=$$(basename $$f | sed 's/[^A-Za-z0-9]/_/g'); \
	    echo "static const char f_$$v[] ="; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' \
	        -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo ';'; done; \
	  echo 'const struct con_file con_files[] = {'; \
	  for f in $(CONSOLE_WWW); do n=$$(basename $$f); v=$$(echo $$n | sed 's/[^A-Za-z0-9]/_/g'); \
	    echo "	{ \"$$n\", f_$$v, sizeof f_$$v - 1 },"; done; \
	  echo '	{ NULL, NULL, 0 }'; echo '};'; } >$@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/con_www.o: $(CONSOLE_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/gen/providers_conf.o: $(CONFIG_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/gen/bounce_rules.o: $(SCHED_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/volley-sink: $(call obj,sink/main.c) $(SINK_OBJ) $(SMTPD_OBJ) $(TLS_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

$(BUILD)/volley-drive: $(call obj,bench/drive/drive.c) $(ENGINE_OBJ) $(DNS_OBJ) $(TLS_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

$(BUILD)/volley-blast: $(call obj,bench/blast/blast.c) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

# The submission load client: its session machine, TLS over memory BIOs, io_uring.
$(BUILD)/volley-submit: $(call obj,$(VSUBMIT_SRC)) $(TLS_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

$(BUILD)/volley-render-bench: $(call obj,bench/render/render.c) $(MESSAGE_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

$(BUILD)/volley-dkim-bench: $(call obj,bench/dkim/dkim.c) $(MESSAGE_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

$(BUILD)/volley-feedback-bench: $(call obj,bench/feedback/feedback.c) $(FEEDBACK_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

# The benchmark driver: bench/vbench/ with volley's composer (the peers are
# sent the very messages volleyd would send).
$(BUILD)/volley-bench: $(call obj,$(VBENCH_SRC)) $(MESSAGE_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs libcurl)

$(BUILD)/volley-compose: $(call obj,tests/tools/compose.c) $(MESSAGE_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS)

$(BUILD)/volley-resolve: $(call obj,tests/tools/resolve.c) $(DNS_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs libcares)

# volleyd runs on jemalloc (docs/architecture.md), linked last so it takes malloc over.
$(BUILD)/volleyd: $(call obj,$(VOLLEYD_SRC)) $(API_OBJ) $(CONSOLE_OBJ) $(SUBMIT_OBJ) $(UNSUB_OBJ) $(WEBHOOK_OBJ) $(SMTPD_OBJ) $(IMAP_OBJ) $(SCHED_OBJ) \
		$(MESSAGE_OBJ) $(FEEDBACK_OBJ) $(ENGINE_OBJ) $(CLUSTER_OBJ) $(STS_OBJ) $(DNS_OBJ) $(TLS_OBJ) $(TLSRPT_OBJ) $(CONFIG_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs libmicrohttpd libcurl zlib) \
		$(CRYPT_LIBS) $(HIREDIS_LIBS) -ljemalloc

# SMTP submission's storage: the submission log against the per-job path
# (the benchmark), and volley-logput: messages put into a data directory's log (tests).
SUBMIT_DEPS = $(SUBMIT_OBJ) $(SMTPD_OBJ) $(SCHED_OBJ) $(MESSAGE_OBJ) $(FEEDBACK_OBJ) $(ENGINE_OBJ) $(CLUSTER_OBJ) $(STS_OBJ) $(DNS_OBJ) \
	      $(TLS_OBJ) $(TLSRPT_OBJ) $(CONFIG_OBJ) $(COMMON_OBJ)
$(BUILD)/volley-submitlog-bench: $(call obj,bench/submitlog/submitlog.c) $(SUBMIT_DEPS)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs libcurl zlib) $(CRYPT_LIBS) $(HIREDIS_LIBS)

$(BUILD)/volley-logput: $(call obj,tests/tools/logput.c) $(SUBMIT_DEPS)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs libcurl zlib) $(CRYPT_LIBS) $(HIREDIS_LIBS)

$(BUILD)/volley: $(call obj,$(CLI_SRC)) $(call obj,submit/users.c) $(DOCTOR_OBJ) $(FEEDBACK_OBJ) $(MESSAGE_OBJ) \
		$(DNS_OBJ) $(TLS_OBJ) $(CONFIG_OBJ) $(COMMON_OBJ)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs libcurl) $(CRYPT_LIBS)

$(UNIT): $(call obj,$(UNIT_SRC) bench/submit/sess.c bench/submit/msg.c) $(DOCTOR_OBJ) $(API_OBJ) $(CONSOLE_OBJ) $(SUBMIT_OBJ) $(UNSUB_OBJ) $(WEBHOOK_OBJ) $(IMAP_OBJ) $(SCHED_OBJ) $(MESSAGE_OBJ) $(FEEDBACK_OBJ) $(ENGINE_OBJ) $(CLUSTER_OBJ) \
		$(STS_OBJ) $(SINK_OBJ) $(SMTPD_OBJ) $(DNS_OBJ) $(TLS_OBJ) $(TLSRPT_OBJ) $(CONFIG_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDFLAGS) $(LIBS) $$(pkg-config --libs criterion libmicrohttpd libcurl zlib) \
		$(CRYPT_LIBS) $(HIREDIS_LIBS)

# The layout's rules first (docs/architecture.md), then every test.
test: all
	@scripts/check-layers.sh
	@scripts/check-names.sh $(BUILD)
	@VOLLEY_BUILD=$(BUILD) tests/run.sh

# Same tests, sanitized build in build/asan.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		$(addprefix build/asan/,volley-sink volley-drive volley-blast volley-submit volley volleyd volley-compose \
		volley-resolve volley-bench volley-render-bench volley-dkim-bench volley-feedback-bench volley-logput \
		volley-submitlog-bench tests/unit)
	@VOLLEY_BUILD=build/asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run.sh

bench: all
	@scripts/install-deps.sh --bench
	@bench/sink-vs-smtp-sink.sh
	@bench/engine.sh
	@bench/intake.sh
	@bench/dns.sh
	@bench/dkim.sh
	@bench/dkim-e2e.sh
	@bench/feedback.sh
	@bench/submitlog.sh
	@echo "== template rendering"; $(BUILD)/volley-render-bench 1000000
	@echo "== volley-bench: every scenario, end to end, with its peers (docs/bench.md)"
	@$(BUILD)/volley-bench small --compare postfix --compare nodemailer --compare haraka --compare blast
	@$(BUILD)/volley-bench newsletter --compare postfix --compare nodemailer --compare haraka --compare blast
	@$(BUILD)/volley-bench latency --compare nodemailer --compare haraka --compare blast
	@$(BUILD)/volley-bench latency-tls --compare blast
	@$(BUILD)/volley-bench sessions
	@$(BUILD)/volley-bench faults --compare postfix
	@$(BUILD)/volley-bench transactional --compare postfix --compare nodemailer --compare haraka
	@$(BUILD)/volley-bench mixed --compare postfix --compare nodemailer --compare haraka
	@$(BUILD)/volley-bench dkim
	@$(BUILD)/volley-bench dkim-100k
	@$(BUILD)/volley-bench dane
	@$(BUILD)/volley-bench submission --compare postfix
	@$(BUILD)/volley-bench submission-sha512 --compare postfix
	@$(BUILD)/volley-bench providers-known
	@$(BUILD)/volley-bench providers
	@$(BUILD)/volley-bench cluster --rounds 3

demo: all
	@scripts/demo.sh

# make install [PREFIX=/usr/local] [DESTDIR=...]: the programs, man pages,
# docs, the systemd unit and an example configuration (packaging/). The
# configuration is not replaced when it exists (it is the operator's).
PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
STATEDIR   ?= /var/lib/volley
install: $(BUILD)/volleyd $(BUILD)/volley $(BUILD)/volley-sink $(BUILD)/volley-bench $(MANS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/volley $(DESTDIR)$(PREFIX)/share/doc/volley \
		$(DESTDIR)$(PREFIX)/share/volley/bench/scenarios/volleyd
	install -m 0755 $(BUILD)/volleyd $(DESTDIR)$(PREFIX)/sbin/volleyd
	install -m 0755 $(BUILD)/volley $(BUILD)/volley-sink $(BUILD)/volley-bench \
		$(DESTDIR)$(PREFIX)/bin/
	for m in $(MANS); do s=$${m##*.}; install -d $(DESTDIR)$(PREFIX)/share/man/man$$s && \
		install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/ || exit 1; done
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/volley/
	install -d $(DESTDIR)$(PREFIX)/share/doc/volley/contrib/prometheus \
		$(DESTDIR)$(PREFIX)/share/doc/volley/contrib/grafana
	install -m 0644 contrib/prometheus/prometheus.yml \
		$(DESTDIR)$(PREFIX)/share/doc/volley/contrib/prometheus/
	install -m 0644 contrib/grafana/volley.json $(DESTDIR)$(PREFIX)/share/doc/volley/contrib/grafana/
	install -m 0644 bench/scenarios/*.conf $(DESTDIR)$(PREFIX)/share/volley/bench/scenarios/
	install -m 0644 bench/scenarios/volleyd/*.conf $(DESTDIR)$(PREFIX)/share/volley/bench/scenarios/volleyd/
	sed -e 's|@SBINDIR@|$(PREFIX)/sbin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		-e 's|@STATEDIR@|$(STATEDIR)|g' packaging/volleyd.service \
		>$(DESTDIR)$(UNITDIR)/volleyd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/volleyd.service
	[ -e $(DESTDIR)$(SYSCONFDIR)/volley/volley.conf ] || \
		sed -e 's|@STATEDIR@|$(STATEDIR)|g' packaging/volley.conf \
		>$(DESTDIR)$(SYSCONFDIR)/volley/volley.conf

# libFuzzer (clang) on the parsers; FUZZ_TIME seconds per target.
FUZZ_TIME ?= 120
FUZZ_SRC := $(COMMON_SRC) $(TLS_SRC)
FUZZ_CC = clang -std=c17 -O1 -g -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	$$(pkg-config --cflags openssl liburing libconfig jansson)
FUZZ_LIBS = $$(pkg-config --libs openssl liburing libconfig jansson libcares) -lm
fuzz: $(SCHED_GEN) $(CONFIG_GEN)
	@scripts/install-deps.sh --fuzz
	@mkdir -p build/fuzz/corpus-sink build/fuzz/corpus-engine build/fuzz/corpus-intake \
		build/fuzz/corpus-dns build/fuzz/corpus-tlsa build/fuzz/corpus-sts \
		build/fuzz/corpus-tlsrpt build/fuzz/corpus-http build/fuzz/corpus-smtpd-sub build/fuzz/corpus-submit \
		build/fuzz/corpus-verbatim build/fuzz/corpus-feedback build/fuzz/corpus-imap build/fuzz/corpus-unsub build/fuzz/corpus-doctor \
		build/fuzz/corpus-clu-supp
	$(FUZZ_CC) tests/fuzz/fuzz_sink_sess.c $(FUZZ_SRC) $(SINK_SRC) $(SMTPD_SRC) \
		-o build/fuzz/fuzz_sink_sess $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_smtpd_sub.c $(FUZZ_SRC) $(SMTPD_SRC) \
		-o build/fuzz/fuzz_smtpd_sub $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_engine_sess.c $(FUZZ_SRC) $(ENGINE_SRC) $(DNS_SRC) \
		-o build/fuzz/fuzz_engine_sess $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_intake.c $(COMMON_SRC) $(CONFIG_SRC) $(CONFIG_GEN) $(MESSAGE_SRC) scheduler/spool.c scheduler/ilog.c \
		api/intake.c api/rcpt_json.c -o build/fuzz/fuzz_intake $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_dns_parse.c dns/parse.c $(COMMON_SRC) -o build/fuzz/fuzz_dns_parse $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_tlsa.c dns/parse.c $(FUZZ_SRC) -o build/fuzz/fuzz_tlsa $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_sts.c $(FUZZ_SRC) -o build/fuzz/fuzz_sts $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_tlsrpt.c $(TLSRPT_SRC) $(COMMON_SRC) -o build/fuzz/fuzz_tlsrpt $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_http.c api/http1.c $(COMMON_SRC) -o build/fuzz/fuzz_http $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_submit_prep.c $(MESSAGE_SRC) $(COMMON_SRC) \
		-o build/fuzz/fuzz_submit_prep $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_feedback.c $(FEEDBACK_SRC) $(COMMON_SRC) \
		-o build/fuzz/fuzz_feedback $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_unsub.c $(COMMON_SRC) $(MESSAGE_SRC) unsub/form.c \
		-o build/fuzz/fuzz_unsub $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_verbatim.c $(COMMON_SRC) $(MESSAGE_SRC) submit/log_rec.c \
		scheduler/spool.c scheduler/ilog.c -o build/fuzz/fuzz_verbatim $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_doctor.c doctor/spf.c doctor/rec.c $(COMMON_SRC) \
		-o build/fuzz/fuzz_doctor $(FUZZ_LIBS)
	$(FUZZ_CC) tests/fuzz/fuzz_clu_supp.c cluster/supp_ent.c $(COMMON_SRC) \
		-o build/fuzz/fuzz_clu_supp $(FUZZ_LIBS)
	cp tests/fuzz/seeds/sink/* build/fuzz/corpus-sink/
	cp tests/fuzz/seeds/engine/* build/fuzz/corpus-engine/
	build/fuzz/fuzz_sink_sess -max_total_time=$(FUZZ_TIME) -max_len=4096 \
		build/fuzz/corpus-sink
	cp tests/fuzz/seeds/sink/* build/fuzz/corpus-smtpd-sub/
	build/fuzz/fuzz_smtpd_sub -max_total_time=$(FUZZ_TIME) -max_len=4096 \
		build/fuzz/corpus-smtpd-sub
	build/fuzz/fuzz_engine_sess -max_total_time=$(FUZZ_TIME) -max_len=4096 \
		build/fuzz/corpus-engine
	cp tests/fuzz/seeds/intake/* build/fuzz/corpus-intake/
	build/fuzz/fuzz_intake -max_total_time=$(FUZZ_TIME) -max_len=8192 \
		build/fuzz/corpus-intake
	cp tests/fuzz/seeds/dns/* build/fuzz/corpus-dns/
	build/fuzz/fuzz_dns_parse -max_total_time=$(FUZZ_TIME) -max_len=2048 \
		build/fuzz/corpus-dns
	cp tests/fuzz/seeds/tlsa/*-* build/fuzz/corpus-tlsa/
	build/fuzz/fuzz_tlsa -max_total_time=$(FUZZ_TIME) -max_len=2048 \
		build/fuzz/corpus-tlsa
	cp tests/fuzz/seeds/sts/* build/fuzz/corpus-sts/
	build/fuzz/fuzz_sts -max_total_time=$(FUZZ_TIME) -max_len=70000 build/fuzz/corpus-sts
	cp tests/fuzz/seeds/tlsrpt/* build/fuzz/corpus-tlsrpt/
	build/fuzz/fuzz_tlsrpt -max_total_time=$(FUZZ_TIME) -max_len=4096 build/fuzz/corpus-tlsrpt
	$(FUZZ_CC) tests/fuzz/fuzz_submit_sess.c bench/submit/sess.c $(FUZZ_SRC) \
		-o build/fuzz/fuzz_submit_sess $(FUZZ_LIBS)
	cp tests/fuzz/seeds/submit/* build/fuzz/corpus-submit/
	build/fuzz/fuzz_submit_sess -max_total_time=$(FUZZ_TIME) -max_len=4096 build/fuzz/corpus-submit
	cp tests/fuzz/seeds/http/* build/fuzz/corpus-http/
	build/fuzz/fuzz_http -max_total_time=$(FUZZ_TIME) -max_len=4096 build/fuzz/corpus-http
	cp tests/fuzz/seeds/submit/* build/fuzz/corpus-submit/
	build/fuzz/fuzz_submit_prep -max_total_time=$(FUZZ_TIME) -max_len=8192 build/fuzz/corpus-submit
	cp tests/fuzz/seeds/verbatim/* build/fuzz/corpus-verbatim/
	build/fuzz/fuzz_verbatim -max_total_time=$(FUZZ_TIME) -max_len=8192 build/fuzz/corpus-verbatim
	cp tests/fuzz/seeds/feedback/* build/fuzz/corpus-feedback/
	build/fuzz/fuzz_feedback -max_total_time=$(FUZZ_TIME) -max_len=16384 build/fuzz/corpus-feedback
	$(FUZZ_CC) tests/fuzz/fuzz_imap.c imap/parse.c $(COMMON_SRC) -o build/fuzz/fuzz_imap $(FUZZ_LIBS)
	cp tests/fuzz/seeds/imap/* build/fuzz/corpus-imap/
	build/fuzz/fuzz_imap -max_total_time=$(FUZZ_TIME) -max_len=8192 build/fuzz/corpus-imap
	cp tests/fuzz/seeds/unsub/* build/fuzz/corpus-unsub/
	build/fuzz/fuzz_unsub -max_total_time=$(FUZZ_TIME) -max_len=8192 build/fuzz/corpus-unsub
	cp tests/fuzz/seeds/doctor/* build/fuzz/corpus-doctor/
	build/fuzz/fuzz_doctor -max_total_time=$(FUZZ_TIME) -max_len=4096 build/fuzz/corpus-doctor
	cp tests/fuzz/seeds/clu-supp/* build/fuzz/corpus-clu-supp/
	build/fuzz/fuzz_clu_supp -max_total_time=$(FUZZ_TIME) -max_len=12000 build/fuzz/corpus-clu-supp

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
