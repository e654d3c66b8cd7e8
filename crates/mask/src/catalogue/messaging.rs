//! Being written.

use crate::spec::DetectorSpec;

/// The messaging detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
