//! Being written.

use crate::spec::DetectorSpec;

/// The keys detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
