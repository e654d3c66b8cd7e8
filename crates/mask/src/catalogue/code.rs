//! Being written.

use crate::spec::DetectorSpec;

/// The code detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
