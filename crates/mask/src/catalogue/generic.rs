//! Being written.

use crate::spec::DetectorSpec;

/// The generic detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
