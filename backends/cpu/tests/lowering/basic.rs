//! Each lowering against the reference interpreter on small graphs
//! (broadcasting, odd sizes, every dtype the lowering accepts).

use crate::common::check;

#[test]
fn add_broadcasts() {
    check(
        "tsr.graph @g(%a: tensor<2x3x5xf32>, %b: tensor<3x1xf32>) -> (\"y\": tensor<2x3x5xf32>) {\n\
           %y = tsr.add %a, %b : (tensor<2x3x5xf32>, tensor<3x1xf32>) -> tensor<2x3x5xf32>\n\
           tsr.return %y\n}\n",
    );
}

#[test]
fn view_then_arith_with_output_copy() {
    check(
        "tsr.graph @g(%a: tensor<4x6xf32>, %b: tensor<24xf32>) -> (\"y\": tensor<24xf32>, \"r\": tensor<2x12xf32>) {\n\
           %s = tsr.constant {value = @shape} : () -> tensor<1xi64>\n\
           %f = tsr.reshape %a, %s : (tensor<4x6xf32>, tensor<1xi64>) -> tensor<24xf32>\n\
           %y = tsr.mul %f, %b : (tensor<24xf32>, tensor<24xf32>) -> tensor<24xf32>\n\
           %s2 = tsr.constant {value = @shape2} : () -> tensor<2xi64>\n\
           %r = tsr.reshape %y, %s2 : (tensor<24xf32>, tensor<2xi64>) -> tensor<2x12xf32>\n\
           tsr.return %y, %r\n}\n\
         tsr.constants {\n  @shape = dense<[24]> : tensor<1xi64>\n  @shape2 = dense<[2, 12]> : tensor<2xi64>\n}\n",
    );
}
