# telcall tasks. Install just with `cargo install just` or `pip install rust-just`.

set dotenv-load := true

# List the recipes.
default:
    @just --list

# Run the server with the configuration from the environment / .env.
run *ARGS:
    cargo run --release -p telcall-server -- serve {{ARGS}}

# Zero-configuration development server (embedded SQLite, random secrets). Not for production.
dev:
    cargo run -p telcall-server -- serve --dev

# Move the database schema: up (default), down, status, fresh. Uses DATABASE_URL.
migrate *ARGS="up":
    cargo run -p telcall-migration -- {{ARGS}}

# Import the older backend's database (sqlite://… or postgres://…) into DATABASE_URL.
import-legacy URL *ARGS:
    cargo run --release -p telcall-server -- import-legacy --from '{{URL}}' {{ARGS}}

# The test suite (SQLite; PostgreSQL tests are skipped).
test:
    cargo test --workspace

# Every test, PostgreSQL included (needs TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test).
test-all:
    TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" cargo test --workspace -- --include-ignored

# Benchmarks (criterion).
bench:
    cargo bench -p telcall-auth -p telcall-signaling -p telcall-telegram

# The standard load test (loopback only, a few minutes): a fresh release server per measurement,
# telcall beside the reference relay and `pgbench -S`; writes tables, JSON lines and plots to
# docs/perf/. Pass e.g. `--parts http,relay` or `--sockets 5000` to run less.
loadtest *ARGS:
    cargo build --release -p telcall-server -p telcall-loadgen
    "${CARGO_TARGET_DIR:-target}/release/telcall-loadgen" suite --server "${CARGO_TARGET_DIR:-target}/release/telcall" --postgres "${LOADTEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" --out docs/perf {{ARGS}}

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all
