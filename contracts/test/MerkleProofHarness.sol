// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title Test harness: OpenZeppelin's MerkleProof on RewardPool's leaf encoding, as a pure call
contract MerkleProofHarness {
    function leaf(uint256 index, address account, uint256 amount) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
    }

    function verify(bytes32[] calldata proof, bytes32 root, uint256 index, address account, uint256 amount)
        external
        pure
        returns (bool)
    {
        return MerkleProof.verifyCalldata(proof, root, leaf(index, account, amount));
    }
}
