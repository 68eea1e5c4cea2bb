//! Tests of the stateful steps.
