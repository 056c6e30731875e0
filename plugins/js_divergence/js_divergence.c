/* Jensen-Shannon divergence, written in C: T^2 * (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, p and q the
 * teacher's and student's softmax at temperature T, batch-mean. Symmetric and bounded (by T^2 ln 2). */
#include "../c/anbiq_plugin.h"

ANBIQ_DESCRIBE("{\"name\": \"js_divergence\", \"kind\": \"loss\", \"style\": \"tensor\","
               " \"description\": \"Jensen-Shannon divergence between teacher and student (written in C)\","
               " \"params\": [{\"name\": \"temperature\", \"type\": \"float\", \"default\": 1.0, \"min\": 0.000001}]}")

static anbiq_t js_divergence(anbiq_t student, anbiq_t teacher, anbiq_t labels) {
    (void)labels;
    double t = anbiq_param("temperature");
    anbiq_t log_p = anbiq_log_softmax(teacher, -1, t), log_q = anbiq_log_softmax(student, -1, t);
    anbiq_t p = anbiq_exp(log_p), q = anbiq_exp(log_q);
    anbiq_t log_m = anbiq_log(anbiq_clamp(anbiq_mul_scalar(anbiq_add(p, q), 0.5), 1e-30, 1.0));
    anbiq_t kl_pm = anbiq_sum(anbiq_mul(p, anbiq_sub(log_p, log_m)), -1, 0);
    anbiq_t kl_qm = anbiq_sum(anbiq_mul(q, anbiq_sub(log_q, log_m)), -1, 0);
    return anbiq_mul_scalar(anbiq_mean_all(anbiq_add(kl_pm, kl_qm)), 0.5 * t * t);
}

ANBIQ_LOSS(js_divergence)
