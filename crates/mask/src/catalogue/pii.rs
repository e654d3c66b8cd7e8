//! Being written.

use crate::spec::DetectorSpec;

/// The pii detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
