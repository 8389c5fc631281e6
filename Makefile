# The two commands the README promises: `make run` and `make test`. Both
# install what they need (a Python venv with the emulator and cargo-lambda)
# and start and stop the emulator themselves.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
STAMP     := $(VENV)/.installed-$(shell cat requirements/dev.txt requirements/constraints.txt | cksum | cut -d' ' -f1)
DEVSTACK  := $(PYTHON) scripts/devstack.py

.PHONY: run test lint lint-infra unit venv emulator package deploy bench explore clean

## make run: the whole waiting room on localhost:8080 (Ctrl-C stops it all)
run: $(STAMP)
	$(DEVSTACK) run

## make test: lint, unit and emulator tests, then the README's curl session
test: $(STAMP) lint lint-infra
	$(DEVSTACK) test

## make lint: formatting and clippy (unwrap/expect/panic are denied)
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## make lint-infra: cfn-lint on the SAM template (the consistency test is in make test)
lint-infra: $(STAMP)
	$(VENV)/bin/cfn-lint infra/template.yaml

## make package: a release zip per function in target/lambda/, offline; arm64
## if that Rust target is installed, else x86_64; fails if a binary needs a
## newer glibc than provided.al2023 has
package: $(STAMP)
	$(DEVSTACK) package

## make deploy: package, then SAM deploys infra/template.yaml (needs the sam
## CLI and AWS credentials; ADMISSION_SIGNING_KEY / ADMISSION_PUBLIC_KEYS from
## `waiting-room-admin new-signing-key`; ALLOWED_ORIGINS for CORS)
STACK ?= waiting-room
deploy: package
	@command -v sam >/dev/null || { echo "make deploy needs the AWS SAM CLI (pip install aws-sam-cli)"; exit 1; }
	@test -n "$$ADMISSION_SIGNING_KEY" && test -n "$$ADMISSION_PUBLIC_KEYS" || { echo "set ADMISSION_SIGNING_KEY and ADMISSION_PUBLIC_KEYS (waiting-room-admin new-signing-key --kid <id>)"; exit 1; }
	@test -n "$$ALLOWED_ORIGINS" || { echo "set ALLOWED_ORIGINS to the origins whose pages call the API (https://tickets.example.com,...)"; exit 1; }
	sam deploy --template-file infra/template.yaml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM --resolve-s3 --no-fail-on-empty-changeset \
	  --parameter-overrides Architecture=$$(cat target/lambda/ARCHITECTURE) \
	    AdmissionSigningKey=$$ADMISSION_SIGNING_KEY AdmissionPublicKeys=$$ADMISSION_PUBLIC_KEYS \
	    AllowedOrigins=$$ALLOWED_ORIGINS \
	    $(DEPLOY_PARAMETERS)

## make bench: cold start, memory, handler CPU, AWS calls, cost, admission
## latency and the 10,000 joins/s simulation, written to bench/RESULTS.md
## (100,000 simulated users; BENCH_ARGS="--sim-users 1000000" for a million,
## about 45 minutes)
bench: $(STAMP)
	$(DEVSTACK) bench -- $(BENCH_ARGS)

## make explore: a million explorer schedules (EXPLORE_ARGS="--schedules N"
## for fewer), written to bench/EXPLORER.md; hours on two cores
explore:
	cargo run --release --locked -p explorer -- $(EXPLORE_ARGS)

## make unit: the tests that need no emulator
unit:
	cargo test --workspace --lib --locked

## make emulator: just the emulator on 127.0.0.1:4566, in the foreground
emulator: $(STAMP)
	$(DEVSTACK) emulator

venv: $(STAMP)

$(STAMP): requirements/dev.txt requirements/constraints.txt
	rm -f $(VENV)/.installed-*
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt -c requirements/constraints.txt
	touch $@

clean:
	rm -rf $(VENV) .local
