//! The rules of contract §3 to 6, one test per rule, named after it.

#![allow(dead_code)]

mod events;
mod explain;
mod gates;
mod grants;
mod import;
mod lifecycle;
mod quotas;
mod schedules;
mod support;
mod transitions;
