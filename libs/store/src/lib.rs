//! The SQL store: embedded migrations, hashed API keys, the audit hash chain and pool gauges.
