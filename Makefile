# The two commands the README promises: `make run` and `make test`. Both
# install what they need (a Python venv with the emulator and cargo-lambda)
# and start and stop the emulator themselves.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
STAMP     := $(VENV)/.installed-$(shell cat requirements/dev.txt requirements/constraints.txt | cksum | cut -d' ' -f1)
DEVSTACK  := $(PYTHON) scripts/devstack.py

.PHONY: run test lint unit venv emulator clean

## make run: the whole waiting room on localhost:8080 (Ctrl-C stops it all)
run: $(STAMP)
	$(DEVSTACK) run

## make test: lint, unit and emulator tests, then the README's curl session
test: $(STAMP) lint
	$(DEVSTACK) test

## make lint: formatting and clippy (unwrap/expect/panic are denied)
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

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
