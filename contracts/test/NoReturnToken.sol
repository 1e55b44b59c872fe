// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Minimal USDT-style token for tests: `transfer`/`transferFrom`/`approve` return nothing
/// @notice Code that decodes a `bool` from these calls reverts; OpenZeppelin's SafeERC20 accepts them.
contract NoReturnToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    constructor(address holder, uint256 supply) {
        balanceOf[holder] = supply;
        totalSupply = supply;
    }

    function transfer(address to, uint256 value) external {
        _move(msg.sender, to, value);
    }

    function transferFrom(address from, address to, uint256 value) external {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance");
        allowance[from][msg.sender] = allowed - value;
        _move(from, to, value);
    }

    function approve(address spender, uint256 value) external {
        allowance[msg.sender][spender] = value;
    }

    function _move(address from, address to, uint256 value) private {
        require(balanceOf[from] >= value, "balance");
        balanceOf[from] -= value;
        balanceOf[to] += value;
    }
}
