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

# The test suite (SQLite; PostgreSQL tests are skipped).
test:
    cargo test --workspace

# Every test, PostgreSQL included (needs TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test).
test-all:
    TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" cargo test --workspace -- --include-ignored

# Benchmarks (criterion).
bench:
    cargo bench -p telcall-auth -p telcall-signaling

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all
