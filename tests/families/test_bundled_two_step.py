"""The bundled 2-step digits student (multistep consistency distillation of ``digits``)."""

import dataclasses

import torch

from genimage.data.builtin import load_builtin
from genimage.evaluation.sampling import conditions_for, dataset_images, draw_samples
from genimage.families.consistency import consistency_settings
from genimage.families.io import load_generator
from genimage.generation import SamplingOptions
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance


def test_bundled_two_step_student_samples_in_two_evaluations_far_better_than_its_teacher_in_two():
    student = load_generator("digits-2step")
    assert (student.config.sampler, student.config.steps) == ("ddim", 2)
    assert consistency_settings(student.config.family_config).segments == 2
    teacher = load_generator("digits")
    net = load_feature_net("digits")
    data = load_builtin("digits", split="train")
    ref = net.features(dataset_images(data))
    cond = conditions_for(student.config, 200)
    with torch.no_grad():
        fast, _ = draw_samples(student.model, 200, 0, cond, options=SamplingOptions.defaults(student.config))
        two = dataclasses.replace(SamplingOptions.defaults(teacher.config), sampler="ddim", steps=2, guidance=1.0)
        slow, _ = draw_samples(teacher.model, 200, 0, cond, options=two)
    student_fd, teacher_fd = frechet_distance(net.features(fast), ref), frechet_distance(net.features(slow), ref)
    assert student_fd < 0.3 * teacher_fd, (student_fd, teacher_fd)
    assert float((net.classify(fast).argmax(1) == torch.tensor(cond)).float().mean()) > 0.9  # the asked digit
