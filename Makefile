# sparkscope: the two commands for a fresh machine are `make demo` and `make test`.
.PHONY: setup demo test bench clean

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup
	bash scripts/test.sh

bench: setup
	bash scripts/bench.sh

clean:
	cargo clean
	rm -rf listener-jar/target .demo tests/artifacts
