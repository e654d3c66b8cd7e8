//! Being written.

use crate::spec::DetectorSpec;

/// The ai detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
