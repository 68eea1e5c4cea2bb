//! Tests of the windowed steps.

use super::*;
