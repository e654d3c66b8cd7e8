//! Being written.

use crate::spec::DetectorSpec;

/// The payments detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
