# Two commands set up a fresh machine: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run install fonts chromium clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# `otayori stats --chart` and the `otayori qr` poster are drawn in Japanese: they need a CJK font (Debian's
# fonts-noto-cjk). Installed
# with apt-get when fc-list finds no Noto Sans CJK (as root, or through a password-less sudo); otherwise a warning,
# and the chart falls back to a font without Japanese glyphs.
fonts:
	@fc-list 2>/dev/null | grep -i "Noto Sans CJK" >/dev/null || { \
		if ! command -v apt-get >/dev/null; then echo "warning: no apt-get: install a Noto Sans CJK font for charts"; \
		elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk; \
		elif sudo -n true 2>/dev/null; then sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk; \
		else echo "warning: fonts-noto-cjk is missing (run: sudo apt-get install fonts-noto-cjk) - charts lack Japanese glyphs"; fi; }

# The browser tests (tests/browser) drive the system's Chromium through Playwright; a browser is never downloaded.
# Installed with apt-get when /usr/bin/chromium is missing (as root, or through a password-less sudo); otherwise a
# warning, and those tests fail saying how to install it.
chromium:
	@test -x /usr/bin/chromium || { \
		if ! command -v apt-get >/dev/null; then echo "warning: no apt-get: install Chromium at /usr/bin/chromium for the browser tests"; \
		elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		elif sudo -n true 2>/dev/null; then sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else echo "warning: chromium is missing (run: sudo apt-get install chromium) - the browser tests will fail"; fi; }

demo: $(STAMP)
	$(BIN)/otayori demo

test: $(STAMP) fonts chromium
	$(BIN)/python -m pytest -q

run: $(STAMP)
	$(BIN)/otayori run

clean:
	rm -rf $(VENV) var/demo
