# Two commands set up a fresh machine: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run install fonts clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# `otayori stats --chart` labels its picture in Japanese: it needs a CJK font (Debian's fonts-noto-cjk). Installed
# with apt-get when fc-list finds no Noto Sans CJK (as root, or through a password-less sudo); otherwise a warning,
# and the chart falls back to a font without Japanese glyphs.
fonts:
	@fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || { \
		if ! command -v apt-get >/dev/null; then echo "warning: no apt-get: install a Noto Sans CJK font for charts"; \
		elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk; \
		elif sudo -n true 2>/dev/null; then sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk; \
		else echo "warning: fonts-noto-cjk is missing (run: sudo apt-get install fonts-noto-cjk) - charts lack Japanese glyphs"; fi; }

demo: $(STAMP)
	$(BIN)/otayori demo

test: $(STAMP) fonts
	$(BIN)/python -m pytest -q

run: $(STAMP)
	$(BIN)/otayori run

clean:
	rm -rf $(VENV) var/demo
