//! Integration tests against the real mail stack (Dovecot + Postfix on loopback).
//! Start it with `bash deploy/mailstack/start.sh`; `bash deploy/test.sh` does everything.

mod addresses;
mod architecture;
mod consent;
mod corpus;
mod faults;
mod helpers;
mod inbox;
mod newsletter;
mod ops;
mod privacy;
mod resilience;
mod trust;
