//! Being written.

use crate::spec::DetectorSpec;

/// The db detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
