export const TEMPLATE_DATABASE = "overseer_test_template";
