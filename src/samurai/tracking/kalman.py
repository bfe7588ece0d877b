"""Constant-velocity Kalman filter on boxes, the SAMURAI motion model.

Stateless float64 numpy math in the style of supervision's ``byte_tracker/kalman_filter.py``
(itself from DeepSORT): every method takes and returns ``(mean, covariance)``; the per-object
state lives in :class:`samurai.tracking.motion.MotionState`. It reproduces
``sam2/sam2/utils/kalman_filter.py`` of the SAMURAI repository, including the order of the
matrix products (``np.linalg.multi_dot`` picks ``A @ (B @ C)`` for these shapes), so the golden
trace ``kalman.npz`` is matched to the last bits.

State ``(xc, yc, a, h, vxc, vyc, va, vh)``: box centre, aspect ratio ``w / h``, height and their
velocities, ``dt = 1`` frame. For SAMURAI the boxes are in model-resolution pixels (1024x1024).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg  # type: ignore[import-untyped, unused-ignore]
from numpy.typing import ArrayLike, NDArray

from samurai.io.masks import box_iou, xyah_to_xyxy

FloatArray = NDArray[np.float64]

STATE_DIM = 8
MEASUREMENT_DIM = 4


class Gaussian(NamedTuple):
    """A Gaussian state estimate; unpacks as ``mean, covariance = gaussian``.

    Attributes:
        mean: ``(8,)`` float64 state ``(xc, yc, a, h, vxc, vyc, va, vh)``, or ``(4,)`` for a
            projection to measurement space ``(xc, yc, a, h)``.
        covariance: ``(8, 8)`` (or ``(4, 4)``) float64, symmetric positive definite.
    """

    mean: FloatArray
    covariance: FloatArray


class KalmanFilter:
    """8-state constant-velocity Kalman filter with height-relative noise (DeepSORT / SAMURAI).

    Instances hold only constants and may be shared by any number of objects and videos.
    """

    std_weight_position: float = 1.0 / 20
    """Position noise, relative to the box height."""
    std_weight_velocity: float = 1.0 / 160
    """Velocity noise, relative to the box height."""

    def __init__(self) -> None:
        self.motion_mat: FloatArray = np.eye(STATE_DIM, STATE_DIM)
        """``F`` (8, 8): position += velocity * dt with dt = 1."""
        for i in range(MEASUREMENT_DIM):
            self.motion_mat[i, MEASUREMENT_DIM + i] = 1.0
        self.update_mat: FloatArray = np.eye(MEASUREMENT_DIM, STATE_DIM)
        """``H`` (4, 8): the measurement is the position part of the state."""

    def initiate(self, measurement: ArrayLike) -> Gaussian:
        """Start a track from one measurement.

        Args:
            measurement: ``(4,)`` ``(xc, yc, a, h)``.

        Returns:
            Mean ``(8,)`` (zero velocities) and diagonal covariance ``(8, 8)``.
        """
        z = _vector(measurement, MEASUREMENT_DIM, "measurement")
        h = z[3]
        mean = np.concatenate([z, np.zeros_like(z)])
        pos, vel = 2 * self.std_weight_position, 10 * self.std_weight_velocity
        std = np.array([pos * h, pos * h, 1e-2, pos * h, vel * h, vel * h, 1e-5, vel * h])
        return Gaussian(mean, np.diag(np.square(std)))

    def predict(self, mean: ArrayLike, covariance: ArrayLike) -> Gaussian:
        """Propagate the state one frame ahead.

        Args:
            mean: ``(8,)`` state at the previous frame.
            covariance: ``(8, 8)``.

        Returns:
            The predicted ``(8,)`` mean and ``(8, 8)`` covariance ``F P F^T + Q``.
        """
        x = _vector(mean, STATE_DIM, "mean")
        p = _matrix(covariance, STATE_DIM, "covariance")
        h = x[3]
        pos, vel = self.std_weight_position, self.std_weight_velocity
        std = np.array([pos * h, pos * h, 1e-2, pos * h, vel * h, vel * h, 1e-5, vel * h])
        motion_cov = np.diag(np.square(std))
        f = self.motion_mat
        new_mean = np.dot(x, f.T)
        new_cov = np.dot(f, np.dot(p, f.T)) + motion_cov
        return Gaussian(new_mean, new_cov)

    def project(self, mean: ArrayLike, covariance: ArrayLike) -> Gaussian:
        """Project the state to measurement space.

        Args:
            mean: ``(8,)``.
            covariance: ``(8, 8)``.

        Returns:
            Mean ``(4,)`` and covariance ``(4, 4)`` = ``H P H^T + R`` (innovation covariance).
        """
        x = _vector(mean, STATE_DIM, "mean")
        p = _matrix(covariance, STATE_DIM, "covariance")
        h = x[3]
        pos = self.std_weight_position
        innovation_cov = np.diag(np.square(np.array([pos * h, pos * h, 1e-1, pos * h])))
        hm = self.update_mat
        projected_cov = np.dot(hm, np.dot(p, hm.T))
        return Gaussian(np.dot(hm, x), projected_cov + innovation_cov)

    def update(self, mean: ArrayLike, covariance: ArrayLike, measurement: ArrayLike) -> Gaussian:
        """Correct the (predicted) state with a measurement.

        Args:
            mean: ``(8,)`` predicted state.
            covariance: ``(8, 8)``.
            measurement: ``(4,)`` ``(xc, yc, a, h)``.

        Returns:
            The corrected ``(8,)`` mean and ``(8, 8)`` covariance.
        """
        x = _vector(mean, STATE_DIM, "mean")
        p = _matrix(covariance, STATE_DIM, "covariance")
        z = _vector(measurement, MEASUREMENT_DIM, "measurement")
        projected_mean, projected_cov = self.project(x, p)
        factor = scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False)
        gain = scipy.linalg.cho_solve(
            factor, np.dot(p, self.update_mat.T).T, check_finite=False
        ).T  # (8, 4)
        innovation = z - projected_mean
        new_mean = x + np.dot(innovation, gain.T)
        new_cov = p - np.dot(gain, np.dot(projected_cov, gain.T))
        return Gaussian(new_mean, new_cov)

    def gating_distance(
        self,
        mean: ArrayLike,
        covariance: ArrayLike,
        measurements: ArrayLike,
        *,
        only_position: bool = False,
    ) -> FloatArray:
        """Squared Mahalanobis distance between the projected state and measurements.

        Args:
            mean: ``(8,)``.
            covariance: ``(8, 8)``.
            measurements: ``(N, 4)`` ``(xc, yc, a, h)``.
            only_position: use only the centre ``(xc, yc)`` (2 degrees of freedom instead of 4).

        Returns:
            ``(N,)`` float64 squared distances (compare with a chi-square quantile).
        """
        projected_mean, projected_cov = self.project(mean, covariance)
        z = np.asarray(measurements, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != MEASUREMENT_DIM:
            raise ValueError(f"measurements must have shape (N, 4), got {z.shape}")
        if only_position:
            projected_mean, projected_cov = projected_mean[:2], projected_cov[:2, :2]
            z = z[:, :2]
        d = z - projected_mean
        cholesky = np.linalg.cholesky(projected_cov)
        w = scipy.linalg.solve_triangular(cholesky, d.T, lower=True, check_finite=False)
        return np.asarray(np.sum(w * w, axis=0), dtype=np.float64)

    @staticmethod
    def predicted_box(mean: ArrayLike) -> FloatArray:
        """``(4,)`` float64 xyxy box of a state's ``(xc, yc, a, h)`` (``(8,)`` or ``(4,)`` mean)."""
        x = np.asarray(mean, dtype=np.float64)
        if x.ndim != 1 or x.shape[0] not in (MEASUREMENT_DIM, STATE_DIM):
            raise ValueError(f"mean must have shape (8,) or (4,), got {x.shape}")
        return xyah_to_xyxy(x[:MEASUREMENT_DIM])

    def candidate_ious(self, mean: ArrayLike, boxes: ArrayLike) -> FloatArray:
        """IoU of the state's box with candidate boxes (the reference ``compute_iou``).

        Args:
            mean: ``(8,)`` state, usually just predicted.
            boxes: ``(K, 4)`` xyxy candidates in the filter's pixel space.

        Returns:
            ``(K,)`` float64; 0 for an empty candidate ``[0, 0, 0, 0]``.
        """
        return box_iou(self.predicted_box(mean), boxes)


def _vector(value: ArrayLike, size: int, name: str) -> FloatArray:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {v.shape}")
    return v


def _matrix(value: ArrayLike, size: int, name: str) -> FloatArray:
    m = np.asarray(value, dtype=np.float64)
    if m.shape != (size, size):
        raise ValueError(f"{name} must have shape ({size}, {size}), got {m.shape}")
    return m


__all__ = ["Gaussian", "KalmanFilter"]
