//! Being written.

use crate::spec::DetectorSpec;

/// The saas detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[];
